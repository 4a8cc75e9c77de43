/**
 * Data for Bilevel: data-path resolution, IDX (MNIST, Fashion-MNIST) and LIBSVM readers, sparse
 * products, synthetic data, splits, label corruption and minibatch samplers. Importing the package registers
 * the `dataset` plugins in core's registry.
 *
 * @module @bilevel/datasets
 */
export * from './data-path';
export * from './idx';
export * from './mnist';
export * from './libsvm';
export * from './sparse';
export * from './synthetic';
export * from './splits';
export * from './corruption';
export * from './sampler';
export * from './plugins';
