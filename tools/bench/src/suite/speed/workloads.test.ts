import * as fs from 'fs';
import * as path from 'path';
import { SPEED_FAMILIES, selectWorkloads, speedSelectors, speedWorkloads, twinScript } from './workloads';

describe('speed workloads', () => {
  it('have unique ids, each in its family', () => {
    for (const quick of [false, true]) {
      const all = speedWorkloads({ quick });
      expect(new Set(all.map((w) => w.id)).size).toBe(all.length);
      for (const w of all) expect(w.id.startsWith(`${w.family}/`)).toBe(true);
      expect(new Set(all.map((w) => w.family))).toEqual(new Set(SPEED_FAMILIES));
    }
  });

  it('--speed-steps replaces every workload’s timed steps', () => {
    expect(speedWorkloads({ quick: true, steps: 4 }).every((w) => w.steps === 4)).toBe(true);
  });

  it('selects by family or by id, in the suite’s order', () => {
    const all = speedWorkloads({ quick: true });
    expect(selectWorkloads(all, undefined)).toHaveLength(all.length);
    expect(selectWorkloads(all, ['micro/sgemm', 'quadratic']).map((w) => w.id)).toEqual([
      'quadratic/aid-cg',
      'quadratic/aid-fp',
      'quadratic/qnbo',
      'quadratic/esj',
      'micro/sgemm',
    ]);
    expect(() => selectWorkloads(all, ['quadratic/newton'])).toThrow(/unknown workload 'quadratic\/newton'/);
  });

  it('accepts as selectors every family and id', () => {
    const s = speedSelectors();
    for (const f of SPEED_FAMILIES) expect(s).toContain(f);
    for (const w of speedWorkloads({ quick: false })) expect(s).toContain(w.id);
  });

  it('has a twin script for every family', () => {
    for (const f of SPEED_FAMILIES) expect(fs.existsSync(path.join(__dirname, '..', '..', '..', twinScript(f)))).toBe(true);
  });
});
