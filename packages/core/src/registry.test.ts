import { container } from 'tsyringe';
import { z } from 'zod';
import { ConfigError } from './errors';
import { parseOptions } from './options';
import { PluginRegistry } from './registry';

/** A plugin that, like the built-in ones, validates its options in its constructor too (for direct `new`). */
const Schema = z.object({ rate: z.number().positive().default(0.5) }).strict();
class Counted {
  readonly name = 'counted';
  readonly options: z.output<typeof Schema>;
  constructor(options: z.input<typeof Schema> = {}) {
    this.options = parseOptions(Schema, options, 'counted');
  }
}

describe('plugin registry: options validated once, every plugin resolved by the container', () => {
  it('a factory-made plugin is resolved in a child container and its options are parsed once', () => {
    const reg = new PluginRegistry(container.createChildContainer());
    const seen: unknown[] = [];
    reg.register({
      kind: 'estimator',
      name: 'counted',
      description: '',
      options: Schema,
      create: (o, c) => {
        seen.push(c);
        return new Counted(o) as never;
      },
    });
    const parse = jest.spyOn(Schema, 'safeParse');
    const made = reg.create('estimator', 'counted', { rate: 2 }) as unknown as Counted;
    expect(parse).toHaveBeenCalledTimes(1);
    expect(made.options).toEqual({ rate: 2 });
    expect(seen[0]).not.toBe(reg.container);
    // Direct construction still validates and fills in defaults; bad options still name the field.
    expect(new Counted().options).toEqual({ rate: 0.5 });
    expect(parse).toHaveBeenCalledTimes(2);
    expect(() => reg.create('estimator', 'counted', { rate: -1 })).toThrow(ConfigError);
    expect(() => new Counted({ rate: -1 })).toThrow(/counted\.rate/);
    parse.mockRestore();
  });

  it('an object made by another schema is validated again', () => {
    const other = z.object({ rate: z.number() }).strict();
    const fromOther = parseOptions(other, { rate: -3 }, 'other');
    expect(() => parseOptions(Schema, fromOther, 'counted')).toThrow(/counted\.rate/);
  });
});
