/**
 * The problem zoo of Bilevel: `quadratic`, `hyper-representation`, `hyperparameter-optimization` and
 * `hyper-cleaning`, each a `BilevelProblem` with validated options. Importing the package registers them by
 * name in core's registry.
 *
 * @module @bilevel/problems
 */
import { registerProblem } from '@bilevel/core';
import {
  type HyperCleaningOptions,
  HyperCleaningOptionsSchema,
  HyperCleaningProblem,
} from './hyper-cleaning';
import {
  type HyperparameterOptimizationOptions,
  HyperparameterOptimizationOptionsSchema,
  HyperparameterOptimizationProblem,
} from './hyperparameter-optimization';
import {
  type HyperRepresentationOptions,
  HyperRepresentationOptionsSchema,
  HyperRepresentationProblem,
} from './hyper-representation';
import { type QuadraticOptions, QuadraticOptionsSchema, QuadraticProblem } from './quadratic';

// ./classification-data: nothing public
export {
  loadDenseSplits,
  SyntheticDataOptionsSchema,
  type SyntheticDataOptions,
  type ClassificationSplits,
  type DenseSplitRequest,
} from './data-sources';
// ./float64: nothing public
export { QuadraticOptionsSchema, type QuadraticOptions, QuadraticProblem } from './quadratic';
export {
  HyperRepresentationOptionsSchema,
  type HyperRepresentationOptions,
  HyperRepresentationProblem,
} from './hyper-representation';
export {
  denseHyperparameterData,
  libsvmHyperparameterData,
  HyperparameterOptimizationOptionsSchema,
  type HyperparameterOptimizationOptions,
  HyperparameterOptimizationProblem,
} from './hyperparameter-optimization';
export {
  HyperCleaningOptionsSchema,
  type HyperCleaningOptions,
  HyperCleaningProblem,
} from './hyper-cleaning';

registerProblem(
  'quadratic',
  (o: QuadraticOptions) => new QuadraticProblem(o),
  QuadraticOptionsSchema,
  "qNBO's quadratic toy: g = ½yᵀAy − xᵀy, f = ½‖x − z₀‖² + ½yᵀAy, closed forms for y*, ∇Φ and x*",
);
registerProblem(
  'hyper-representation',
  (o: HyperRepresentationOptions) => HyperRepresentationProblem.fromOptions(o),
  HyperRepresentationOptionsSchema,
  'learn a (linear or two-layer sigmoid) representation under a ridge-regression head, as in ESJ',
);
registerProblem(
  'hyperparameter-optimization',
  (o: HyperparameterOptimizationOptions) => HyperparameterOptimizationProblem.fromOptions(o),
  HyperparameterOptimizationOptionsSchema,
  'one L2 penalty exp(x_j) per feature of a multinomial logistic regression (dense or sparse LIBSVM data)',
);
registerProblem(
  'hyper-cleaning',
  (o: HyperCleaningOptions) => HyperCleaningProblem.fromOptions(o),
  HyperCleaningOptionsSchema,
  'data hyper-cleaning: one weight σ(x_i) per corrupted training sample, validation loss outside (Fashion-MNIST)',
);
