import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { DATA_PATH_ENV, dataSearchPaths, describeSearch, resolveDataPath } from './index';
import { TemporaryFolders } from '@bilevel/core/testing';

const temps = new TemporaryFolders();
afterAll(() => temps.removeAll());

describe('resolveDataPath', () => {
  const saved = { env: process.env[DATA_PATH_ENV], home: process.env.HOME };
  let root: string;

  beforeEach(() => {
    root = temps.make('bilevel-path-');
    process.env.HOME = join(root, 'home');
    delete process.env[DATA_PATH_ENV];
  });

  afterAll(() => {
    if (saved.env === undefined) delete process.env[DATA_PATH_ENV];
    else process.env[DATA_PATH_ENV] = saved.env;
    process.env.HOME = saved.home;
  });

  it('searches explicit, then each BILEVEL_DATA_PATH root, then the cache, then /usr/share/datasets', () => {
    process.env[DATA_PATH_ENV] = `${join(root, 'a')}::${join(root, 'b')}`;
    const paths = dataSearchPaths('toy');
    expect(paths.map((p) => p.source)).toEqual(['env', 'env', 'cache', 'system']);
    expect(paths.map((p) => p.path)).toEqual([
      join(root, 'a', 'toy'),
      join(root, 'b', 'toy'),
      join(root, 'home', '.cache', 'bilevel', 'toy'),
      '/usr/share/datasets/toy',
    ]);
    expect(dataSearchPaths('toy', join(root, 'mine'))).toEqual([
      { path: join(root, 'mine'), source: 'explicit' },
    ]);
  });

  it('returns the first location that exists', () => {
    process.env[DATA_PATH_ENV] = `${join(root, 'a')}:${join(root, 'b')}`;
    expect(resolveDataPath('toy-set-that-is-nowhere')).toBeNull();
    mkdirSync(join(root, 'home', '.cache', 'bilevel', 'toy-set-that-is-nowhere'), { recursive: true });
    expect(resolveDataPath('toy-set-that-is-nowhere')).toBe(
      join(root, 'home', '.cache', 'bilevel', 'toy-set-that-is-nowhere'),
    );
    mkdirSync(join(root, 'b', 'toy-set-that-is-nowhere'), { recursive: true });
    expect(resolveDataPath('toy-set-that-is-nowhere')).toBe(join(root, 'b', 'toy-set-that-is-nowhere'));
    mkdirSync(join(root, 'a', 'toy-set-that-is-nowhere'), { recursive: true });
    expect(resolveDataPath('toy-set-that-is-nowhere')).toBe(join(root, 'a', 'toy-set-that-is-nowhere'));
  });

  it('uses only the explicit path when one is given', () => {
    mkdirSync(join(root, 'home', '.cache', 'bilevel', 'toy'), { recursive: true });
    expect(resolveDataPath('toy', join(root, 'missing'))).toBeNull();
    expect(resolveDataPath('toy', root)).toBe(root);
    expect(describeSearch('toy', join(root, 'missing'))).toContain('(explicit)');
  });

  it('refuses names that escape the data roots', () => {
    expect(() => dataSearchPaths('../etc')).toThrow(/relative folder name/);
    expect(() => dataSearchPaths('/etc')).toThrow(/relative folder name/);
  });
});
