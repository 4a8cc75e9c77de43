/**
 * Run-time access to packages that may be absent (`@tensorflow/tfjs-node`, `@tensorflow/tfjs-node-gpu`):
 * they are never dependencies of this library, so they are looked up by name when a backend is started.
 * Kept as an object so that tests can stand in for a package that is not installed here.
 */
export const optionalModules = {
  /** The resolved file of `name`, or null when it is not installed. */
  resolve(name: string): string | null {
    try {
      return require.resolve(name);
    } catch {
      return null;
    }
  },
  /** Loads `name`; throws as `require` does. */
  load(name: string): unknown {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require(name);
  },
};

/** The message of a thrown value (checked by shape: errors from another realm, e.g. jest's resolver, count). */
export function errorMessage(error: unknown): string {
  const message = (error as { message?: unknown } | null)?.message;
  return (typeof message === 'string' ? message : String(error)).split('\n')[0];
}

/** Whether `error` says that `name` itself (not one of its own dependencies) is not installed. */
export function isModuleNotFound(error: unknown, name: string): boolean {
  // Node: "Cannot find module 'name'" (code MODULE_NOT_FOUND); a missing dependency of the package names that
  // dependency instead. Jest's resolver gives the same message.
  return errorMessage(error).startsWith(`Cannot find module '${name}'`);
}
