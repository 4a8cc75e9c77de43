/**
 * Test helpers of Bilevel, for plugin authors' tests as well as this repository's: a general quadratic
 * bilevel problem with float64 closed forms (`QuadraticFixture`), a tree relative error, and a tensor-count
 * probe for leak checks, and temporary folders that are removed after a test file. Imported as `@bilevel/core/testing`, apart from the library's API.
 *
 * @module @bilevel/core/testing
 */
export { tensorCountGrowth, treeRelativeError } from './helpers';
export { QuadraticFixture, type QuadraticFixtureOptions } from './quadratic-fixture';
export { TemporaryFolders } from './temporary-folders';
