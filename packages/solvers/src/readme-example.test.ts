import * as tf from '@tensorflow/tfjs-core';
import { createOracles, registry } from '@bilevel/core';
import { QuadraticFixture } from '@bilevel/core/testing';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { LbfgsSolver } from './index';

// Runs the README's usage example as written (checked against the file), with a float64 reference.
describe('README example', () => {
  it('is the code in README.md and gives y* = A⁻¹Bx', () => {
    const readme = readFileSync(join(__dirname, '..', 'README.md'), 'utf8');
    expect(readme).toContain(
      "registry.create('innerSolver', 'lbfgs', { memory: 10, tolerance: 1e-5, maxIterations: 200 })",
    );
    expect(readme).toContain('const u = result.curvature?.applyInverseHessian({ y: tf.ones([50]) });');
    const problem = new QuadraticFixture({ innerDimension: 50, conditionNumber: 100 });
    const oracles = createOracles(problem);
    const x = { x: tf.ones([50]) };
    const y0 = problem.initialY();
    const solver = registry.create('innerSolver', 'lbfgs', {
      memory: 10,
      tolerance: 1e-5,
      maxIterations: 200,
    });
    const result = solver.solve({ oracles, x, y0 });
    expect(result.converged).toBe(true);
    const ys = problem.innerSolutionArray(new Float64Array(50).fill(1));
    const y = result.y.y.dataSync();
    let err = 0;
    let den = 0;
    for (let i = 0; i < 50; i++) {
      err += (y[i] - ys[i]) ** 2;
      den += ys[i] ** 2;
    }
    expect(Math.sqrt(err / den)).toBeLessThan(1e-4);
    const u = result.curvature?.applyInverseHessian({ y: tf.ones([50]) });
    expect(u?.y.shape).toEqual([50]);
    expect(() => new LbfgsSolver({ memory: 0 })).toThrow(/lbfgs\.memory/);
    tf.dispose([x.x, y0.y, result.y.y, u?.y ?? []].flat());
    problem.dispose();
  });
});
