/**
 * The built-in plugins (registered as a side effect of importing their packages) and loading of a user's
 * own plugin modules (`plugins:` in a config, `--plugin` on the command line).
 */
import '@bilevel/solvers';
import '@bilevel/estimators';
import '@bilevel/datasets';
import '@bilevel/problems';
import '@bilevel/meta-learning';
import { createRequire } from 'module';
import * as path from 'path';
import { ConfigError } from '@bilevel/core';

/** Something that loads a module by resolved path or package name (Node's `require`, or a test's). */
export type ModuleLoader = (id: string) => unknown;

/** Resolves a plugin reference: paths (`./x.js`, `/abs/x.js`) relative to `baseDir`, package names as given. */
export function resolvePluginId(id: string, baseDir: string): string {
  return id.startsWith('.') || path.isAbsolute(id) ? path.resolve(baseDir, id) : id;
}

/**
 * Loads plugin modules; each registers its plugins on import (e.g. `registerEstimator('mine', Mine, Schema)`).
 * A module that cannot be found or throws while loading is a {@link ConfigError} naming it.
 */
export function loadPluginModules(modules: readonly string[], baseDir: string, loader?: ModuleLoader): void {
  const load = loader ?? createRequire(path.join(path.resolve(baseDir), '__bilevel_plugins__.js'));
  modules.forEach((id, i) => {
    const target = resolvePluginId(id, baseDir);
    try {
      load(target);
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      if (e instanceof ConfigError) throw e;
      const reason =
        err.code === 'MODULE_NOT_FOUND' && String(err.message).includes(target)
          ? 'module not found'
          : `it failed while loading: ${err.message ?? String(e)}`;
      throw new ConfigError(`plugins.${i}: cannot load plugin module '${id}' (${target}): ${reason}`, `plugins.${i}`);
    }
  });
}
