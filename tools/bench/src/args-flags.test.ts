/**
 * The bench's command line beyond the speed options (args.test.ts): every flag of the suite, values given
 * separately or inline, and the errors of a bad command line — each a UsageError that names the flag — and how
 * run.ts reports them (exit code 2, the message, a hint to --help).
 */
import { spawnSync } from 'child_process';
import * as path from 'path';
import { BACKEND_CHOICES, COMMANDS, parseArgs, SUITE_SECTION_IDS, UsageError, USAGE, type SuiteArgs } from './args';

function suite(argv: string[]): SuiteArgs {
  const r = parseArgs(argv);
  if (r.kind !== 'suite') throw new Error(`expected the suite, got ${r.kind}`);
  return r.args;
}

/** The UsageError message of a command line (fails the test when there is none). */
function usageError(argv: string[]): string {
  try {
    parseArgs(argv);
  } catch (e) {
    expect(e).toBeInstanceOf(UsageError);
    return (e as Error).message;
  }
  throw new Error(`no error for ${argv.join(' ')}`);
}

describe('parseArgs: the suite flags', () => {
  it('defaults: the whole suite, no quick mode, no extra files, backend auto, the default report folder', () => {
    expect(suite([])).toEqual({ quick: false, png: false, json: false, backend: 'auto', sections: SUITE_SECTION_IDS });
    expect(suite(['suite'])).toEqual(suite([]));
  });

  it('sets every flag, with values separate or inline', () => {
    expect(suite(['--quick', '--png', '--json', '--out', 'some/dir', '--backend', 'cpu'])).toEqual({
      quick: true,
      png: true,
      json: true,
      backend: 'cpu',
      out: 'some/dir',
      sections: SUITE_SECTION_IDS,
    });
    expect(suite(['--out=x=y', '--backend=wasm'])).toMatchObject({ out: 'x=y', backend: 'wasm' });
    for (const b of BACKEND_CHOICES) expect(suite(['--backend', b]).backend).toBe(b);
  });

  it('--only keeps the sections in suite order, whatever order they are given in', () => {
    expect(suite(['--only', 'few-shot,quadratic']).sections).toEqual(['quadratic', 'few-shot']);
    expect(suite(['--only', ' hyper-cleaning , ']).sections).toEqual(['hyper-cleaning']);
  });

  it('help is read left to right: after good flags it wins, after a bad one the error is reported', () => {
    expect(parseArgs(['--help'])).toEqual({ kind: 'help' });
    expect(parseArgs(['--quick', '-h', '--bogus'])).toEqual({ kind: 'help' });
    expect(usageError(['--bogus', '--help'])).toBe("unknown option '--bogus' (see --help)");
  });

  it('the other commands take no options', () => {
    for (const command of ['kernels', 'solvers', 'estimators']) {
      expect(COMMANDS).toContain(command);
      expect(parseArgs([command])).toEqual({ kind: 'command', command });
      expect(usageError([command, '--quick'])).toBe(`command '${command}' takes no options (got --quick)`);
    }
  });
});

describe('parseArgs: bad command lines name what is wrong', () => {
  it('flags without the value they need', () => {
    for (const flag of ['--out', '--backend', '--only', '--workloads', '--speed-steps']) {
      expect(usageError([flag])).toBe(`option '${flag}' needs a value`);
      expect(usageError([`${flag}=`])).toBe(`option '${flag}' needs a value`);
      // The next word is another flag, not a value.
      expect(usageError([flag, '--quick'])).toBe(`option '${flag}' needs a value`);
    }
  });

  it('switches given a value', () => {
    for (const flag of ['--quick', '--png', '--json']) expect(usageError([`${flag}=yes`])).toBe(`option '${flag}' takes no value`);
  });

  it('a flag given twice, also once inline and once separate', () => {
    expect(usageError(['--quick', '--quick'])).toBe("option '--quick' given twice");
    expect(usageError(['--out', 'a', '--out=b'])).toBe("option '--out' given twice");
  });

  it('unknown options, commands, backends and sections, with what is accepted', () => {
    expect(usageError(['--bogus'])).toBe("unknown option '--bogus' (see --help)");
    expect(usageError(['-q'])).toBe("unknown option '-q' (see --help)");
    expect(usageError(['bogus'])).toMatch(/^unknown command 'bogus' \(expected one of: suite, kernels, solvers, estimators/);
    expect(usageError(['kernels', 'solvers'])).toBe("unexpected argument 'solvers' (the command is already 'kernels')");
    expect(usageError(['--backend', 'gpu'])).toBe(`option '--backend': 'gpu' is not one of ${BACKEND_CHOICES.join(', ')}`);
    expect(usageError(['--only', 'quadratic,nope'])).toBe(
      `option '--only': unknown section 'nope' (expected: ${SUITE_SECTION_IDS.join(', ')})`,
    );
    expect(usageError(['--only', ','])).toMatch(/^option '--only': unknown section '' /);
  });
});

describe('run.ts on a bad command line', () => {
  const root = path.resolve(__dirname, '..', '..', '..');
  const runTs = path.join(__dirname, 'run.ts');
  const tsx = require.resolve('tsx/cli', { paths: [root] });
  const run = (args: string[]) => spawnSync(process.execPath, [tsx, runTs, ...args], { cwd: root, encoding: 'utf8', timeout: 60_000 });

  it('exits 2 with the message and a hint, running nothing', () => {
    const r = run(['--quick', '--bogus']);
    expect(r.status).toBe(2);
    expect(r.stderr).toBe("run.js: unknown option '--bogus' (see --help)\nTry --help.\n");
    expect(r.stdout).toBe('');
  });

  it('--help prints the usage and exits 0', () => {
    const r = run(['--help']);
    expect(r.status).toBe(0);
    expect(r.stdout).toBe(`${USAGE}\n`);
  });
});
