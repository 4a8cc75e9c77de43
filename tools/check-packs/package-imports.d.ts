/** Package name of a bare import specifier, or null for relative paths and Node built-ins. */
export function packageOf(spec: string): string | null;
/** The library sources under `dir`: .ts files, without tests and test utilities. */
export function sourceFiles(dir: string): string[];
/** Every package imported by `<pkgDir>/src`: name → the first file importing it. */
export function packageImports(pkgDir: string): Map<string, string>;
