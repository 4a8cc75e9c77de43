import type { TreeSpec } from '@bilevel/core';
import { LbfgsMemory } from './lbfgs-memory';
import { DEFAULT_QUASI_NEWTON_MEMORY_OPTIONS, type QuasiNewtonMemoryOptions } from './options';
import { Sr1Memory } from './sr1-memory';

/** The pair memories by name. */
export type PairMemoryKind = 'lbfgs' | 'sr1';

/** A fresh L-BFGS or SR1 memory for vectors shaped like `spec`. */
export function createPairMemory(
  kind: PairMemoryKind,
  spec: TreeSpec,
  options: Partial<QuasiNewtonMemoryOptions> = {},
): LbfgsMemory | Sr1Memory {
  const full = { ...DEFAULT_QUASI_NEWTON_MEMORY_OPTIONS, ...options };
  return kind === 'lbfgs' ? new LbfgsMemory(spec, full) : new Sr1Memory(spec, full);
}
