import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { inject as tsyringeInject, injectable as tsyringeInjectable } from 'tsyringe';
import { inject, injectable, PLUGIN_OPTIONS, PluginRegistry, registry, z } from './index';

describe('inject / injectable from @bilevel/core', () => {
  it("are tsyringe's decorators", () => {
    expect(injectable).toBe(tsyringeInjectable);
    expect(inject).toBe(tsyringeInject);
  });

  it('build a decorated plugin class with its validated options', () => {
    @injectable()
    class Scaled {
      readonly name = 'scaled';
      constructor(@inject(PLUGIN_OPTIONS) readonly options: { factor: number }) {}
    }
    const reg = new PluginRegistry(registry.container.createChildContainer());
    reg.register({
      kind: 'estimator',
      name: 'scaled',
      description: '',
      options: z.object({ factor: z.number().default(3) }).strict(),
      useClass: Scaled as never,
    });
    const made = reg.create('estimator', 'scaled', {}) as unknown as Scaled;
    expect(made).toBeInstanceOf(Scaled);
    expect(made.options).toEqual({ factor: 3 });
  });

  it('load in a fresh process that imports nothing else first (reflect-metadata comes with core)', () => {
    // A plugin file as the README shows it: decorators imported from core alone, no `import 'reflect-metadata'`.
    // In a process of its own, so that no earlier import of this test has loaded the polyfill.
    const code = [
      `import { inject, injectable, PLUGIN_OPTIONS, registerEstimator, registry, z } from ${JSON.stringify(path.join(__dirname, 'index'))};`,
      '@injectable()',
      'class Probe { readonly name = "probe"; constructor(@inject(PLUGIN_OPTIONS) readonly options: { k: number }) {} estimate(): never { throw new Error("unused"); } }',
      'registerEstimator("probe-estimator", Probe, z.object({ k: z.number().default(7) }).strict());',
      'const made = registry.create("estimator", "probe-estimator", {}) as unknown as Probe;',
      'console.log(JSON.stringify({ reflect: typeof Reflect.getMetadata, options: made.options }));',
    ].join('\n');
    const root = path.resolve(__dirname, '../../..');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bilevel-inject-'));
    try {
      fs.writeFileSync(path.join(dir, 'probe.ts'), code);
      // tsx applies a tsconfig to the files it includes: the probe and core's sources (whose plugins use decorators).
      fs.writeFileSync(
        path.join(dir, 'tsconfig.json'),
        JSON.stringify({
          compilerOptions: { experimentalDecorators: true, emitDecoratorMetadata: true },
          include: ['*.ts', path.join(__dirname, '**', '*.ts')],
        }),
      );
      const out = execFileSync(process.execPath, [require.resolve('tsx/cli', { paths: [root] }), 'probe.ts'], {
        cwd: dir,
        encoding: 'utf8',
        timeout: 60_000,
      });
      expect(JSON.parse(out.trim().split('\n').pop() as string)).toEqual({ reflect: 'function', options: { k: 7 } });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
