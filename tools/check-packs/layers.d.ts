/** Package → the @bilevel packages its library code may import (the package map's layering). */
export const ALLOWED_IMPORTS: Record<string, string[]>;
/** The layering violations of one package, one message per import (naming the file), given its imports. */
export function layeringProblems(name: string, imports: Map<string, string>): string[];
