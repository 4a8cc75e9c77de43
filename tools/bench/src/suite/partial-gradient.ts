import {
  type Estimate,
  type EstimateContext,
  type HypergradientEstimator,
  treeDispose,
} from '@bilevel/core';

/**
 * A reference point for the benchmark, not a bilevel method: the partial gradient ∇ₓf(x, y_N(x)) alone, i.e.
 * the hypergradient with the implicit term −∇²ₓᵧg·[∇²_yy g]⁻¹∇_y f dropped. A method whose curve matches this
 * one gains nothing from its estimate of that term.
 */
export class PartialGradientEstimator implements HypergradientEstimator {
  readonly name = 'partial-gradient';

  estimate(context: EstimateContext): Estimate {
    const { value, gradX, gradY } = context.oracles.outerGrads(context.x, context.inner.y, context.outerBatch);
    value.dispose();
    treeDispose(gradY);
    return { hypergradient: gradX, diagnostics: { 'calls.total': 1 } };
  }
}
