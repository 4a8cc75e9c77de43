import { SUITE_SECTION_IDS, UsageError, parseArgs, type SuiteArgs } from './args';

function suite(argv: string[]): SuiteArgs {
  const r = parseArgs(argv);
  if (r.kind !== 'suite') throw new Error(`expected the suite, got ${r.kind}`);
  return r.args;
}

describe('parseArgs: the speed section', () => {
  it('runs every section, speed last, by default, with each workload’s own step count', () => {
    const a = suite([]);
    expect(a.sections).toEqual(SUITE_SECTION_IDS);
    expect(a.sections[a.sections.length - 1]).toBe('speed');
    expect(a.speedSteps).toBeUndefined();
    expect(a.workloads).toBeUndefined();
  });

  it('--only speed runs the speed section alone', () => {
    expect(suite(['--only', 'speed']).sections).toEqual(['speed']);
    expect(suite(['--only=quadratic,speed']).sections).toEqual(['quadratic', 'speed']);
  });

  it('--speed-steps takes a positive integer, separate or inline', () => {
    expect(suite(['--speed-steps', '7']).speedSteps).toBe(7);
    expect(suite(['--speed-steps=12', '--quick']).speedSteps).toBe(12);
    for (const bad of ['0', '-3', '2.5', 'abc', '1e3']) {
      expect(() => parseArgs([`--speed-steps=${bad}`])).toThrow(UsageError);
    }
    expect(() => parseArgs(['--speed-steps'])).toThrow(/needs a value/);
  });

  it('--speed-sequential is a flag of the speed section', () => {
    expect(suite(['--speed-sequential']).speedSequential).toBe(true);
    expect(suite([]).speedSequential).toBeUndefined();
    expect(() => parseArgs(['--speed-sequential=yes'])).toThrow(/takes no value/);
    expect(() => parseArgs(['--only', 'quadratic', '--speed-sequential'])).toThrow(/applies to the speed section/);
  });

  it('--workloads takes families and workload ids, and alone implies --only speed', () => {
    const a = suite(['--workloads', 'quadratic,micro/sgemm']);
    expect(a.workloads).toEqual(['quadratic', 'micro/sgemm']);
    expect(a.sections).toEqual(['speed']);
    expect(suite(['--workloads=micro,micro']).workloads).toEqual(['micro']);
  });

  it('--workloads with --only keeps the sections asked for, and needs speed among them', () => {
    expect(suite(['--only', 'quadratic,speed', '--workloads', 'micro']).sections).toEqual(['quadratic', 'speed']);
    expect(() => parseArgs(['--only', 'quadratic', '--workloads', 'micro'])).toThrow(/leaves out the speed section/);
    expect(() => parseArgs(['--only', 'quadratic', '--speed-steps', '3'])).toThrow(/leaves out/);
  });

  it('refuses unknown workloads, naming them and the accepted ones', () => {
    expect(() => parseArgs(['--workloads', 'quadratic,nope'])).toThrow(/unknown workload 'nope' \(expected: quadratic, hyper-cleaning/);
    expect(() => parseArgs(['--workloads', ','])).toThrow(UsageError);
  });

  it('refuses an unknown section, listing speed among the known ones', () => {
    expect(() => parseArgs(['--only', 'speedy'])).toThrow(/expected: quadratic, hyper-representation, hyper-cleaning, few-shot, benchopt, benchopt-ho, speed/);
  });

  it('keeps the other options working beside the new ones', () => {
    const a = suite(['--quick', '--out', '/tmp/x', '--workloads', 'micro', '--speed-steps', '2', '--backend', 'cpu']);
    expect(a).toMatchObject({ quick: true, out: '/tmp/x', backend: 'cpu', speedSteps: 2, workloads: ['micro'], sections: ['speed'] });
    expect(() => parseArgs(['kernels', '--speed-steps', '2'])).toThrow(/takes no options/);
  });

  it("the esj command takes --quick and --out only", () => {
    expect(parseArgs(['esj'])).toEqual({ kind: 'esj', quick: false });
    expect(parseArgs(['esj', '--quick', '--out', '/tmp/x'])).toEqual({ kind: 'esj', quick: true, out: '/tmp/x' });
    expect(() => parseArgs(['esj', '--png'])).toThrow(/command 'esj' takes only --quick and --out \(got --png\)/);
  });
});
