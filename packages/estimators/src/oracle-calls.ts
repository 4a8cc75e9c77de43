import { ORACLE_KINDS, type OracleCounts, type Oracles } from '@bilevel/core';

/**
 * Counts the oracle calls made between its creation and {@link OracleCallMeter.diagnostics}: the cost of
 * one estimate, by kind (`calls.hessianVector`, `calls.innerGradY`, …) and in total (`calls.total`).
 */
export class OracleCallMeter {
  private readonly before: OracleCounts;

  constructor(private readonly oracles: Oracles) {
    this.before = { ...oracles.counts };
  }

  /** The calls made since the meter was created, as `calls.<kind>` entries and their sum `calls.total`. */
  diagnostics(): Record<string, number> {
    const out: Record<string, number> = {};
    let total = 0;
    for (const kind of ORACLE_KINDS) {
      const made = this.oracles.counts[kind] - this.before[kind];
      out[`calls.${kind}`] = made;
      total += made;
    }
    out['calls.total'] = total;
    return out;
  }
}
