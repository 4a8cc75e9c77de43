/**
 * The ready configs in examples/ validate against the real plugins (the same check as `bilevel run
 * --dry-run`: every field and every plugin option, no data read), and examples/README.md documents every
 * field of the config format.
 */
import * as fs from 'fs';
import * as path from 'path';
import { OracleSpecSchema, TrainerOptionsSchema, z } from '@bilevel/core';
import './plugins';
import {
  CheckpointSchema,
  ExperimentConfigSchema,
  MethodSchema,
  OutputSchema,
  planExperiment,
  ProgressSchema,
  readConfigFile,
} from './config';

const examples = path.resolve(__dirname, '..', '..', '..', 'examples');
const configs = fs.readdirSync(examples).filter((f) => /\.ya?ml$/.test(f)).sort();

function keys(schema: z.ZodTypeAny): string[] {
  let s: z.ZodTypeAny = schema;
  while (s instanceof z.ZodEffects || s instanceof z.ZodDefault || s instanceof z.ZodOptional) {
    s = s instanceof z.ZodEffects ? s._def.schema : s._def.innerType;
  }
  if (!(s instanceof z.ZodObject)) throw new Error('not an object schema');
  return Object.keys(s.shape as Record<string, unknown>);
}

describe('examples', () => {
  it('holds the main job and one config per problem of the zoo', () => {
    expect(configs).toEqual(
      expect.arrayContaining([
        'hyper-cleaning-fashion-mnist.yaml',
        'quadratic.yaml',
        'hyper-representation-linear.yaml',
        'hyperparameter-optimization.yaml',
        'few-shot-omniglot.yaml',
      ]),
    );
  });

  it.each(configs)('%s validates against the registered plugins', (file) => {
    const plan = planExperiment(readConfigFile(path.join(examples, file)), { baseDir: examples });
    expect(plan.methods.length).toBeGreaterThan(0);
    // Each config says in its header how it is sized and how long it takes.
    expect(fs.readFileSync(path.join(examples, file), 'utf8')).toMatch(/^#/);
  });

  it('README documents every field of the config format', () => {
    const readme = fs.readFileSync(path.join(examples, 'README.md'), 'utf8');
    const fields = [
      ...keys(ExperimentConfigSchema),
      ...keys(MethodSchema),
      ...keys(OutputSchema),
      ...keys(ProgressSchema),
      ...keys(CheckpointSchema),
      ...keys(TrainerOptionsSchema),
      ...keys(OracleSpecSchema),
    ];
    const missing = fields.filter((f) => !readme.includes(`\`${f}\``));
    expect(missing).toEqual([]);
  });
});
