/**
 * A small strict XML parser for tests: it accepts a prolog, comments, elements with quoted attributes,
 * self-closing tags, text and the predefined / numeric entities, and throws on anything malformed
 * (unclosed or mismatched tags, bad attributes, unknown entities, a second root, stray '<' or '&').
 */
export interface XmlElement {
  readonly name: string;
  readonly attributes: Readonly<Record<string, string>>;
  readonly children: XmlElement[];
  text: string;
}

const NAME = /^[A-Za-z_:][-A-Za-z0-9_:.]*/;

function decodeEntities(raw: string, where: number): string {
  return raw.replace(/&([^;]*);|&/g, (m, body: string | undefined) => {
    if (body === undefined) throw new Error(`XML: bare '&' near offset ${where}`);
    const named: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };
    if (body in named) return named[body];
    const num = /^#(x[0-9a-fA-F]+|[0-9]+)$/.exec(body);
    if (num) return String.fromCodePoint(num[1][0] === 'x' ? parseInt(num[1].slice(1), 16) : parseInt(num[1], 10));
    throw new Error(`XML: unknown entity '${m}' near offset ${where}`);
  });
}

export function parseXml(source: string): XmlElement {
  let i = 0;
  const s = source;
  const skipSpace = (): void => {
    while (i < s.length && /\s/.test(s[i])) i++;
  };
  if (s.startsWith('<?xml')) {
    const end = s.indexOf('?>');
    if (end < 0) throw new Error('XML: unterminated prolog');
    i = end + 2;
  }
  const stack: XmlElement[] = [];
  let root: XmlElement | null = null;
  while (i < s.length) {
    if (s.startsWith('<!--', i)) {
      const end = s.indexOf('-->', i + 4);
      if (end < 0) throw new Error('XML: unterminated comment');
      i = end + 3;
    } else if (s.startsWith('</', i)) {
      i += 2;
      const m = NAME.exec(s.slice(i));
      if (!m) throw new Error(`XML: bad closing tag at offset ${i}`);
      i += m[0].length;
      skipSpace();
      if (s[i] !== '>') throw new Error(`XML: expected '>' at offset ${i}`);
      i++;
      const open = stack.pop();
      if (!open || open.name !== m[0]) throw new Error(`XML: </${m[0]}> does not close <${open?.name ?? '(nothing)'}>`);
    } else if (s[i] === '<') {
      i++;
      const m = NAME.exec(s.slice(i));
      if (!m) throw new Error(`XML: bad tag name at offset ${i}`);
      i += m[0].length;
      const attributes: Record<string, string> = {};
      for (;;) {
        const before = i;
        skipSpace();
        if (s[i] === '>' || s.startsWith('/>', i)) break;
        if (i === before) throw new Error(`XML: expected space before attribute at offset ${i}`);
        const a = NAME.exec(s.slice(i));
        if (!a) throw new Error(`XML: bad attribute at offset ${i}`);
        i += a[0].length;
        skipSpace();
        if (s[i] !== '=') throw new Error(`XML: attribute '${a[0]}' needs a value (offset ${i})`);
        i++;
        skipSpace();
        const q = s[i];
        if (q !== '"' && q !== "'") throw new Error(`XML: attribute '${a[0]}' value must be quoted (offset ${i})`);
        const end = s.indexOf(q, i + 1);
        if (end < 0) throw new Error(`XML: unterminated attribute '${a[0]}'`);
        const raw = s.slice(i + 1, end);
        if (raw.includes('<')) throw new Error(`XML: '<' in attribute '${a[0]}'`);
        if (a[0] in attributes) throw new Error(`XML: duplicate attribute '${a[0]}'`);
        attributes[a[0]] = decodeEntities(raw, i);
        i = end + 1;
      }
      const el: XmlElement = { name: m[0], attributes, children: [], text: '' };
      if (stack.length) stack[stack.length - 1].children.push(el);
      else if (root) throw new Error(`XML: second root element <${m[0]}>`);
      else root = el;
      if (s.startsWith('/>', i)) {
        i += 2;
      } else {
        i++;
        stack.push(el);
      }
    } else {
      const next = s.indexOf('<', i);
      const end = next < 0 ? s.length : next;
      const raw = s.slice(i, end);
      if (stack.length) stack[stack.length - 1].text += decodeEntities(raw, i);
      else if (raw.trim()) throw new Error(`XML: text outside the root element at offset ${i}`);
      i = end;
    }
  }
  if (stack.length) throw new Error(`XML: <${stack[stack.length - 1].name}> is never closed`);
  if (!root) throw new Error('XML: no root element');
  return root;
}

/** Every element below `root` (itself included) with the given name. */
export function findAll(root: XmlElement, name: string): XmlElement[] {
  const out: XmlElement[] = [];
  const walk = (e: XmlElement): void => {
    if (e.name === name) out.push(e);
    e.children.forEach(walk);
  };
  walk(root);
  return out;
}

/**
 * The drawn lines of a chart rendered by vega: the `<path>` elements of its line marks (a `<g>` whose class
 * has `mark-line` and `role-mark`), one per series and segment.
 */
export function linePaths(svg: XmlElement): XmlElement[] {
  const classes = (e: XmlElement): string[] => (e.attributes.class ?? '').split(/\s+/);
  return findAll(svg, 'g')
    .filter((g) => classes(g).includes('mark-line') && classes(g).includes('role-mark'))
    .flatMap((g) => g.children.filter((c) => c.name === 'path'));
}
