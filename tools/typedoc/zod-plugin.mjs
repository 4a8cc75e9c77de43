// @ts-check
/**
 * A TypeDoc plugin for zod option schemas, loaded by the root typedoc.json.
 *
 * - An options type inferred from a zod schema (`z.output<typeof XOptionsSchema>`) is shown as the object type
 *   it stands for, so its page lists every option.
 * - A property of an options type inferred from a zod schema (`z.output<typeof XOptionsSchema>`) takes its
 *   documentation from the schema: the key's doc comment when it has one, else the text of the key's
 *   `.describe('…')` call, which is also what `bilevel list` prints. So each option is documented once, in
 *   the schema, and shows in the API reference and in the editor.
 * - An exported schema variable is shown as its zod class (`ZodObject`, `ZodEffects`, …) instead of the
 *   whole generic type zod infers for it (hundreds of nested members); its fields are documented on the
 *   options type inferred from it.
 */
import ts from 'typescript';
import { Comment, Converter, ReferenceType, ReflectionKind, ReflectionType } from 'typedoc';

/** The value of a string literal, or of literals joined by `+`. */
function stringValue(node) {
  if (ts.isStringLiteral(node) || ts.isNoSubstitutionTemplateLiteral(node)) return node.text;
  if (ts.isParenthesizedExpression(node)) return stringValue(node.expression);
  if (ts.isBinaryExpression(node) && node.operatorToken.kind === ts.SyntaxKind.PlusToken) {
    const left = stringValue(node.left);
    const right = stringValue(node.right);
    return left !== undefined && right !== undefined ? left + right : undefined;
  }
  return undefined;
}

/** The string passed to `.describe(…)` somewhere in a chain such as `z.number().positive().describe('…')`. */
function describeText(node) {
  let e = node;
  while (e) {
    if (ts.isCallExpression(e)) {
      const callee = e.expression;
      if (ts.isPropertyAccessExpression(callee) && callee.name.text === 'describe') {
        const text = e.arguments[0] && stringValue(e.arguments[0]);
        if (text !== undefined) return text;
      }
      e = callee;
    } else if (ts.isPropertyAccessExpression(e) || ts.isParenthesizedExpression(e) || ts.isAsExpression(e)) {
      e = e.expression;
    } else {
      return undefined;
    }
  }
  return undefined;
}

/** @param {import('typedoc').Application} app */
export function load(app) {
  // An options type written as `z.output<typeof Schema>` (or `z.input`, `z.infer`) is shown as the object type it
  // stands for, so its page lists every option (TypeDoc's @useDeclaredType, added here to each such alias).
  app.converter.on(Converter.EVENT_CREATE_DECLARATION, (context, reflection) => {
    if (!reflection.kindOf(ReflectionKind.TypeAlias)) return;
    const symbol = context.getSymbolFromReflection(reflection);
    const decl = symbol?.declarations?.find(ts.isTypeAliasDeclaration);
    if (!decl || !/^z\.(output|input|infer)</.test(decl.type.getText())) return;
    reflection.comment ??= new Comment();
    reflection.comment.modifierTags.add('@useDeclaredType');
  });

  app.converter.on(
    Converter.EVENT_CREATE_DECLARATION,
    (context, reflection) => {
      if (reflection.comment || !reflection.kindOf(ReflectionKind.Property)) return;
      const symbol = context.getSymbolFromReflection(reflection);
      for (const decl of symbol?.declarations ?? []) {
        if (!ts.isPropertyAssignment(decl)) continue;
        const text = describeText(decl.initializer);
        if (text) {
          const sentence = text.charAt(0).toUpperCase() + text.slice(1) + (/[.!?)]$/.test(text) ? '' : '.');
          reflection.comment = new Comment([{ kind: 'text', text: sentence }]);
          return;
        }
      }
    },
    -100,
  );

  app.converter.on(Converter.EVENT_RESOLVE_BEGIN, (context) => {
    const project = context.project;
    for (const variable of project.getReflectionsByKind(ReflectionKind.Variable)) {
      const type = /** @type {import('typedoc').DeclarationReflection} */ (variable).type;
      if (!(type instanceof ReferenceType) || type.package !== 'zod' || !type.typeArguments?.length) continue;
      const nested = [];
      const collect = (t) => {
        if (!t || typeof t !== 'object') return;
        if (t instanceof ReflectionType) nested.push(t.declaration);
        for (const value of Object.values(t)) {
          if (Array.isArray(value)) value.forEach(collect);
          else if (value && typeof value === 'object' && 'type' in value && typeof value.type === 'string')
            collect(value);
        }
      };
      type.typeArguments.forEach(collect);
      for (const decl of nested) project.removeReflection(decl);
      type.typeArguments = undefined;
    }
  });
}
