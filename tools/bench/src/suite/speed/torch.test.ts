import { type TorchProbe, findTorch, openBlasCoreOf, parseTwinOutput, torchMissingText } from './torch';

/** A probe that knows which Pythons "have" torch. */
function probe(
  withTorch: Record<string, string>,
  missing: Record<string, string> = {},
): TorchProbe & { calls: string[] } {
  const calls: string[] = [];
  const p = ((python: string) => {
    calls.push(python);
    if (python in withTorch) return { version: withTorch[python] };
    return { error: missing[python] ?? 'not found' };
  }) as TorchProbe & { calls: string[] };
  p.calls = calls;
  return p;
}

describe('findTorch', () => {
  it('tries BILEVEL_TORCH_PYTHON first, then /usr/bin/python3, then python3', () => {
    const p = probe(
      { python3: '2.1.0' },
      { '/opt/py': 'no module named torch', '/usr/bin/python3': 'no module named torch' },
    );
    expect(findTorch({ BILEVEL_TORCH_PYTHON: '/opt/py' }, p)).toEqual({
      found: true,
      python: 'python3',
      version: '2.1.0',
    });
    expect(p.calls).toEqual(['/opt/py', '/usr/bin/python3', 'python3']);
  });

  it('stops at the first Python that imports torch', () => {
    const p = probe({ '/usr/bin/python3': '1.13.0' });
    expect(findTorch({}, p)).toEqual({ found: true, python: '/usr/bin/python3', version: '1.13.0' });
    expect(p.calls).toEqual(['/usr/bin/python3']);
  });

  it('says where it looked when no Python has torch', () => {
    const p = probe({}, { '/usr/bin/python3': 'no module named torch' });
    const info = findTorch({}, p);
    expect(info).toEqual({
      found: false,
      looked: [
        'BILEVEL_TORCH_PYTHON (not set)',
        '/usr/bin/python3 (no module named torch)',
        'python3 (not found)',
      ],
    });
    expect(torchMissingText(info)).toBe(
      'PyTorch not found (looked for BILEVEL_TORCH_PYTHON (not set), /usr/bin/python3 (no module named torch), python3 (not found))',
    );
  });

  it('BILEVEL_TORCH_PYTHON=none turns the twins off without running anything', () => {
    const p = probe({ '/usr/bin/python3': '1.13.0' });
    const info = findTorch({ BILEVEL_TORCH_PYTHON: 'none' }, p);
    expect(info.found).toBe(false);
    expect(p.calls).toEqual([]);
    expect(torchMissingText(info)).toMatch(/BILEVEL_TORCH_PYTHON=none/);
  });
});

describe('parseTwinOutput', () => {
  it('reads the last JSON line with times, ignoring other output', () => {
    const out = 'warming up\n{"timesMs": [1, 2.5], "checks": {"outerLoss": 0.5}, "setupSeconds": 0.1}\n';
    expect(parseTwinOutput(out)).toEqual({
      status: 'completed',
      timesMs: [1, 2.5],
      checks: { outerLoss: 0.5 },
      setupSeconds: 0.1,
    });
  });

  it('turns an error line into a failure with its message', () => {
    expect(parseTwinOutput('{"error": "ValueError: bad", "status": "failed"}')).toMatchObject({
      status: 'failed',
      error: 'ValueError: bad',
    });
  });

  it('returns null when there is no result line', () => {
    expect(parseTwinOutput('Traceback (most recent call last):\n  ...')).toBeNull();
    expect(parseTwinOutput('{"not": "a result"}')).toBeNull();
  });
});

describe('openBlasCoreOf', () => {
  it('reads the kernel family from the backend description, and nothing from others', () => {
    expect(openBlasCoreOf('OpenBLAS 0.3.21 (SkylakeX), 2 threads; tensorflow: tfjs-node not installed')).toBe(
      'SkylakeX',
    );
    expect(openBlasCoreOf('Accelerate, threads managed by the library')).toBeUndefined();
    expect(openBlasCoreOf(undefined)).toBeUndefined();
  });
});
