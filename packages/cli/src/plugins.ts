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
import { ConfigError, loadedCoreCopies } from '@bilevel/core';

/** Something that loads a module by resolved path or package name (Node's `require`, or a test's). */
export type ModuleLoader = (id: string) => unknown;

/** Resolves a plugin reference: paths (`./x.js`, `/abs/x.js`) relative to `baseDir`, package names as given. */
export function resolvePluginId(id: string, baseDir: string): string {
  return id.startsWith('.') || path.isAbsolute(id) ? path.resolve(baseDir, id) : id;
}

/** The module named by a MODULE_NOT_FOUND error ("Cannot find module 'x'"), or null. */
function missingModule(message: string): string | null {
  const m = /Cannot find module '([^']+)'/.exec(message);
  return m ? m[1] : null;
}

/**
 * Loads plugin modules; each registers its plugins on import (e.g. `registerEstimator('mine', Mine, Schema)`).
 * A module that cannot be found, whose own import cannot be resolved (that import is named, e.g.
 * `@bilevel/core`), or that throws while loading is a {@link ConfigError} naming it. So is a module that
 * loaded a second copy of `@bilevel/core` (its plugins would register into that copy's registry, out of
 * sight): both copies are named.
 */
export function loadPluginModules(modules: readonly string[], baseDir: string, loader?: ModuleLoader): void {
  const load = loader ?? createRequire(path.join(path.resolve(baseDir), '__bilevel_plugins__.js'));
  modules.forEach((id, i) => {
    const target = resolvePluginId(id, baseDir);
    const where = `plugins.${i}`;
    const copiesBefore = loadedCoreCopies();
    try {
      load(target);
    } catch (e) {
      const err = e as NodeJS.ErrnoException & { requireStack?: string[] };
      if (e instanceof ConfigError) throw e;
      const message = String(err?.message ?? e);
      const missing = err?.code === 'MODULE_NOT_FOUND' ? missingModule(message) : null;
      let reason: string;
      if (missing !== null && (missing === target || missing === id)) {
        reason = 'module not found';
      } else if (missing !== null) {
        const from = err.requireStack?.[0];
        reason =
          `its import of '${missing}'${from ? ` (in ${from})` : ''} cannot be resolved` +
          (missing.startsWith('@bilevel/')
            ? `; install ${missing} where the plugin can find it, or run with NODE_PATH pointing at the node_modules that holds it`
            : `; install '${missing}' for the plugin`);
      } else {
        reason = `it failed while loading: ${message.split('\n')[0]}`;
      }
      throw new ConfigError(`${where}: cannot load plugin module '${id}' (${target}): ${reason}`, where);
    }
    const copies = loadedCoreCopies();
    if (copies.length > copiesBefore.length && copies.length > 1) {
      const added = copies.filter((c) => !copiesBefore.includes(c));
      throw new ConfigError(
        `${where}: plugin module '${id}' (${target}) loaded its own copy of @bilevel/core (${added.join(', ')}) ` +
          `beside the one bilevel uses (${copiesBefore[0] ?? copies[0]}); its plugins would register into a registry ` +
          'bilevel cannot see. Make @bilevel/core a peerDependency of the plugin (and remove its own ' +
          'node_modules/@bilevel/core) so that both use one copy.',
        where,
      );
    }
  });
}
