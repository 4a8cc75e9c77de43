// reflect-metadata first: tsyringe refuses to load without the Reflect metadata API.
import 'reflect-metadata';
import { inject as tsyringeInject, injectable as tsyringeInjectable } from 'tsyringe';

/**
 * Class decorator that lets the plugin registry build a plugin class through dependency injection
 * (tsyringe's `injectable`, re-exported so that a plugin imports everything from `@bilevel/core`, which
 * loads the `reflect-metadata` polyfill tsyringe needs before tsyringe itself):
 *
 * ```ts
 * @injectable()
 * class MyEstimator implements HypergradientEstimator {
 *   constructor(@inject(PLUGIN_OPTIONS) private readonly options: MyOptions) {}
 * }
 * ```
 *
 * Decorators need `"experimentalDecorators": true` in the project's tsconfig.json.
 */
export const injectable: typeof tsyringeInjectable = tsyringeInjectable;

/**
 * Parameter decorator naming what the registry injects into a constructor parameter, e.g.
 * `@inject(PLUGIN_OPTIONS)` for the plugin's validated options (tsyringe's `inject`, re-exported; see
 * {@link injectable}).
 */
export const inject: typeof tsyringeInject = tsyringeInject;
