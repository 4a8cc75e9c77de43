/**
 * Property-based fuzz of config loading and command-line flags (fast-check): configs mutated from the real
 * examples/*.yaml, random YAML text and random command lines must end with exit code 0, 1 or 2 and a message
 * — never an uncaught error or a stack trace. Most cases run the parser and validator in-process; a handful go
 * through the built executable. Bounded (a few seconds); the seed is fixed (BILEVEL_FUZZ_SEED replays another)
 * and printed.
 */
import { execFileSync, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import * as fc from 'fast-check';
import { ConfigError, DataError, registry } from '@bilevel/core';
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import './plugins';
import './test-utils/test-plugins';
import { describeError, runCli } from './cli';
import { loadExperiment, planExperiment } from './config';
import { loadPluginModules, type ModuleLoader } from './plugins';
import { CaptureStream, makeTempDir, tinyConfig } from './test-utils/helpers';

const SEED = Number(process.env.BILEVEL_FUZZ_SEED ?? 20260417);
/** BILEVEL_FUZZ_SCALE multiplies the number of cases (1 in CI; more for a longer hunt). */
const SCALE = Math.max(1, Number(process.env.BILEVEL_FUZZ_SCALE ?? 1));
const root = path.resolve(__dirname, '..', '..', '..');
const examples = fs
  .readdirSync(path.join(root, 'examples'))
  .filter((f) => f.endsWith('.yaml'))
  .map((f) => ({ file: f, config: parseYaml(fs.readFileSync(path.join(root, 'examples', f), 'utf8')) as unknown }));
const tmp = makeTempDir('bilevel-fuzz-');
afterAll(() => tmp.cleanup());

beforeAll(() => {
  // Printed so that a failure can be replayed: BILEVEL_FUZZ_SEED=<seed> npx nx run @bilevel/cli:test -- config-fuzz
  process.stdout.write(`config fuzz: seed ${SEED} (BILEVEL_FUZZ_SEED replays another)\n`);
});

/** No plugin module exists in the fuzz: every one is "not found" the way Node says it. */
const noModules: ModuleLoader = (id) => {
  throw Object.assign(new Error(`Cannot find module '${id}'\nRequire stack:\n- ${tmp.dir}/x.js`), { code: 'MODULE_NOT_FOUND' });
};

const STACK = /\n\s+at .+[:(]\d+:\d+\)?/;
/** What JavaScript says when the program itself is wrong: never a message for a user. */
const INTERNAL = /Cannot read propert|Cannot set propert|is not a function|is not defined|is not iterable|Maximum call stack|undefined \(reading/;

/** Values a field might be replaced with: every JSON-ish kind, and the numbers that used to slip through. */
const oddValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(NaN, Infinity, -Infinity, -0, 0, 1, -1, 0.5, 2 ** 32, 2 ** 32 - 1, 2 ** 53 + 2, 1e20, -1e20, 1e-320, Number.MAX_VALUE),
  fc.double(),
  fc.integer(),
  fc.string({ maxLength: 12 }),
  fc.constantFrom('', 'gd', 'cg', 'qnbo', 'es', '.inf', 'NaN', '../../etc', '/proc/x', '__proto__', 'constructor'),
  fc.boolean(),
  fc.constant(null),
  fc.constant(undefined),
  fc.array(fc.oneof(fc.integer(), fc.string({ maxLength: 4 }), fc.double()), { maxLength: 4 }),
  fc.dictionary(fc.string({ maxLength: 6 }), fc.oneof(fc.integer(), fc.string({ maxLength: 4 })), { maxKeys: 3 }),
);

type Json = unknown;

/** Every path (keys and indices) inside a value. */
function pathsOf(value: Json, at: (string | number)[] = [], out: (string | number)[][] = []): (string | number)[][] {
  out.push(at);
  if (Array.isArray(value)) value.forEach((v, i) => pathsOf(v, [...at, i], out));
  else if (value !== null && typeof value === 'object') for (const [k, v] of Object.entries(value)) pathsOf(v, [...at, k], out);
  return out;
}

/** A copy of `value` with the thing at `at` replaced (`undefined` deletes an object key). */
function withAt(value: Json, at: readonly (string | number)[], replace: (old: Json) => Json): Json {
  if (at.length === 0) return replace(value);
  const [head, ...rest] = at;
  if (Array.isArray(value)) {
    const copy = [...value];
    copy[head as number] = withAt(copy[head as number], rest, replace);
    return copy;
  }
  const copy = { ...(value as Record<string, Json>) };
  const next = withAt(copy[head as string], rest, replace);
  if (next === undefined) delete copy[head as string];
  else copy[head as string] = next;
  return copy;
}

/** An example config with 1–4 mutations: a field replaced, deleted, wrapped in a list, or an unknown key added. */
const mutatedConfig: fc.Arbitrary<Json> = fc
  .tuple(
    fc.integer({ min: 0, max: examples.length - 1 }),
    fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 3 }), oddValue, fc.string({ minLength: 1, maxLength: 8 })), {
      minLength: 1,
      maxLength: 4,
    }),
  )
  .map(([which, mutations]) => {
    let config: Json = structuredClone(examples[which].config);
    for (const [pick, kind, value, key] of mutations) {
      const paths = pathsOf(config);
      const at = paths[pick % paths.length];
      config = withAt(config, at, (old) => {
        if (kind === 0) return value;
        if (kind === 1) return undefined;
        if (kind === 2) return [old];
        return old !== null && typeof old === 'object' && !Array.isArray(old) ? { ...old, [key]: value } : value;
      });
    }
    return config;
  });

/** The outcome of an error that reached the top, checked the way the command reports it. */
function expectReported(e: unknown): void {
  // Only config and data errors may come out of loading a config; anything else is a bug found by the fuzz.
  if (!(e instanceof ConfigError || e instanceof DataError)) throw e;
  const { code, message } = describeError(e);
  expect(code).toBe(2);
  expect(message.length).toBeGreaterThan(14);
  expect(message).not.toMatch(STACK);
  expect(message).not.toMatch(INTERNAL);
}

describe('config fuzz (in-process)', () => {
  it('every example config, mutated: a plan or a config error with a message', () => {
    fc.assert(
      fc.property(mutatedConfig, (config) => {
        try {
          const plan = planExperiment(config, {
            baseDir: tmp.dir,
            loadPlugins: (modules, baseDir) => loadPluginModules(modules, baseDir, noModules),
          });
          expect(plan.methods.length).toBeGreaterThan(0);
          // What `bilevel run` does next, before any data is read: build each method's plugins once.
          plan.methods.forEach((m, i) => {
            for (const kind of ['innerSolver', 'estimator', 'outerOptimizer'] as const) {
              const ref = m.pipeline[kind] as { name: string; options: unknown };
              (registry.create(kind, ref.name, ref.options, `methods.${i}.${kind}`) as { dispose?: () => void }).dispose?.();
            }
          });
        } catch (e) {
          expectReported(e);
        }
      }),
      { seed: SEED, numRuns: 300 * SCALE },
    );
  });

  it('random and cut YAML text: a plan or a config error with a message', () => {
    const text = fc.oneof(
      fc.string({ maxLength: 200 }),
      fc.tuple(fc.integer({ min: 0, max: examples.length - 1 }), fc.nat(), fc.string({ maxLength: 20 })).map(([which, cut, junk]) => {
        const source = fs.readFileSync(path.join(root, 'examples', examples[which].file), 'utf8');
        const at = cut % (source.length + 1);
        return source.slice(0, at) + junk + source.slice(at + junk.length);
      }),
    );
    let n = 0;
    fc.assert(
      fc.property(text, fc.constantFrom('yaml', 'json'), (body, ext) => {
        const file = path.join(tmp.dir, `text-${n++}.${ext}`);
        fs.writeFileSync(file, body);
        try {
          loadExperiment(file, { loadPlugins: (modules, baseDir) => loadPluginModules(modules, baseDir, noModules) });
        } catch (e) {
          expectReported(e);
        }
      }),
      { seed: SEED, numRuns: 150 * SCALE },
    );
  });

  it('random command lines: exit 0, 1 or 2 (130 when the pre-aborted run stops) and a message, never a stack', async () => {
    const good = path.join(tmp.dir, 'good.json');
    fs.writeFileSync(good, JSON.stringify(tinyConfig({ trainer: { steps: 2 }, output: { plots: false } })));
    const badYaml = path.join(tmp.dir, 'bad.yaml');
    fs.writeFileSync(badYaml, 'name: [unclosed\n');
    const token = fc.oneof(
      fc.constantFrom('run', 'resume', 'list', 'compare', 'estimators', 'backends', 'problems', 'nope'),
      fc.constantFrom('--backend', '--seed', '--out', '--steps', '--quiet', '--dry-run', '--force', '--plugin', '--json', '--markdown', '--help', '-V', '--frob', '--'),
      // (never '/' or another real folder: a run that passes its checks writes there)
      fc.constantFrom(good, badYaml, path.join(tmp.dir, 'missing.yaml'), tmp.dir, '/proc/x', '', '-'),
      fc.constantFrom('0', '-1', '1e20', '4294967296', '4294967295', '0,1,1', 'NaN', 'Infinity', '0x10', ' 3', 'cpu', 'wasm', 'auto'),
      fc.string({ maxLength: 8 }),
    );
    const codes = new Map<number, number>();
    // Command lines that get past the parser more often: a command, its argument, then option/value pairs.
    const value = fc.oneof(
      fc.constantFrom('0', '1', '-1', '1e20', '4294967296', '4294967295', '0,1', '1,1', '2.5', 'NaN', 'cpu', 'wasm', 'nope', ''),
      fc.constantFrom(tmp.dir, '/proc/x', '/sys/x', path.join(good, 'sub'), good),
      fc.string({ maxLength: 6 }),
    );
    const wellFormed = fc
      .tuple(
        fc.constantFrom(['run', good], ['run', badYaml], ['run', good, '--dry-run'], ['resume', tmp.dir], ['list'], ['list', 'estimators', '--json'], ['compare', tmp.dir]),
        fc.array(fc.tuple(fc.constantFrom('--backend', '--seed', '--out', '--steps', '--plugin', '--force', '--quiet'), value), { maxLength: 4 }),
      )
      .map(([command, options]) => [
        ...command,
        ...options.flatMap(([flag, v]) => (flag === '--force' || flag === '--quiet' ? [flag] : [flag, v])),
      ]);
    const cwd = process.cwd();
    // Default results folders (results/<name>-<time>) land in the scratch folder, not in the package.
    process.chdir(tmp.dir);
    try {
      let n = 0;
      await fc.assert(
        fc.asyncProperty(fc.oneof(fc.array(token, { maxLength: 7 }), wellFormed), async (tokens) => {
          // A run that passes every check stops before its first step (pre-aborted): no training in the fuzz.
          const argv = tokens.map((t) => (t === tmp.dir ? path.join(tmp.dir, `out-${n++}`) : t));
          const stdout = new CaptureStream(false);
          const stderr = new CaptureStream(false);
          const abort = new AbortController();
          abort.abort();
          const code = await runCli(argv, { stdout, stderr, signal: abort.signal, loadModule: noModules });
          expect([0, 1, 2, 130]).toContain(code);
          codes.set(code, (codes.get(code) ?? 0) + 1);
          if (code === 1 || code === 2) expect(stderr.text.trim().length + stdout.text.trim().length).toBeGreaterThan(0);
          expect(stderr.text).not.toMatch(STACK);
          expect(stdout.text).not.toMatch(STACK);
          expect(stderr.text).not.toMatch(INTERNAL);
        }),
        { seed: SEED, numRuns: 120 * SCALE },
      );
    } finally {
      process.chdir(cwd);
    }
    process.stdout.write(`config fuzz: command lines by exit code: ${JSON.stringify(Object.fromEntries(codes))}\n`);
  });
});

describe('config fuzz (the executable)', () => {
  const main = path.join(root, 'packages', 'cli', 'dist', 'main.js');

  beforeAll(() => {
    // Builds the CLI and the packages it imports (nx builds dependencies first and caches).
    execFileSync('npx', ['nx', 'run', '@bilevel/cli:build', '--outputStyle=static'], { cwd: root, stdio: 'pipe', timeout: 600_000 });
  }, 600_000);

  it('a handful of mutated configs through dist/main.js --dry-run: exit 0 or 2, a message, no stack', () => {
    const samples = fc.sample(mutatedConfig, { seed: SEED, numRuns: 4 });
    samples.forEach((config, i) => {
      // YAML keeps NaN and ±Infinity (.nan, .inf), which JSON would turn into null.
      const file = path.join(tmp.dir, `binary-${i}.yaml`);
      fs.writeFileSync(file, toYaml(config ?? null));
      const r = spawnSync(process.execPath, [main, 'run', file, '--dry-run'], { cwd: tmp.dir, encoding: 'utf8', timeout: 60_000 });
      expect(r.signal).toBeNull();
      expect([0, 2]).toContain(r.status);
      if (r.status === 2) expect(r.stderr).toMatch(/^bilevel: (config|data) error: \S/);
      expect(r.stderr + r.stdout).not.toMatch(STACK);
      expect(r.stderr).not.toMatch(INTERNAL);
    });
  });
});
