/** Number, time and table formatting shared by the progress display, summaries and `bilevel compare`. */

/** A compact number: 4 significant digits, exponential notation for very small or very large magnitudes. */
export function formatNumber(value: number | undefined | null, digits = 4): string {
  if (value === undefined || value === null) return '—';
  if (Number.isNaN(value)) return 'NaN';
  if (!Number.isFinite(value)) return value > 0 ? 'Inf' : '-Inf';
  if (value === 0) return '0';
  const abs = Math.abs(value);
  if (Number.isInteger(value) && abs < 1e9) return String(value);
  if (abs >= 1e5 || abs < 1e-3) return trimExponential(value.toExponential(digits - 1));
  return trimFixed(value.toPrecision(digits));
}

function trimFixed(s: string): string {
  return s.includes('.') && !s.includes('e') ? s.replace(/0+$/, '').replace(/\.$/, '') : s;
}

function trimExponential(s: string): string {
  const [mantissa, exponent] = s.split('e');
  const m = mantissa.includes('.') ? mantissa.replace(/0+$/, '').replace(/\.$/, '') : mantissa;
  return `${m}e${exponent.replace(/^\+/, '')}`;
}

/** Seconds as `m:ss` (or `h:mm:ss`); `--:--` when unknown. */
export function formatDuration(seconds: number | undefined): string {
  if (seconds === undefined || !Number.isFinite(seconds) || seconds < 0) return '--:--';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  const pad = (n: number): string => String(n).padStart(2, '0');
  return h > 0 ? `${h}:${pad(m)}:${pad(sec)}` : `${m}:${pad(sec)}`;
}

/** `mean ± sd` (the sd is left out for a single value). */
export function formatMeanSd(stat: { mean: number; sd: number; n: number } | undefined): string {
  if (!stat || stat.n === 0) return '—';
  if (stat.n === 1) return formatNumber(stat.mean);
  return `${formatNumber(stat.mean)} ± ${formatNumber(stat.sd, 2)}`;
}

/** A plain-text table with aligned columns (numbers right-aligned), for terminals. */
export function textTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, j) => Math.max(h.length, ...rows.map((r) => (r[j] ?? '').length)));
  const numeric = header.map((_, j) => rows.length > 0 && rows.every((r) => /^[-+0-9.eNaInf ±—]*$/.test(r[j] ?? '')));
  const line = (cells: readonly string[]): string =>
    cells
      .map((c, j) => (numeric[j] ? c.padStart(widths[j]) : c.padEnd(widths[j])))
      .join('  ')
      .trimEnd();
  const rule = widths.map((w) => '-'.repeat(w)).join('  ');
  return [line(header), rule, ...rows.map(line)].join('\n');
}

/** A GitHub-flavoured Markdown table. */
export function markdownTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const esc = (s: string): string => s.replace(/\|/g, '\\|');
  return [
    `| ${header.map(esc).join(' | ')} |`,
    `| ${header.map(() => '---').join(' | ')} |`,
    ...rows.map((r) => `| ${r.map(esc).join(' | ')} |`),
  ].join('\n');
}

/** A file-name-safe form of a label: `qNBO (BFGS)` → `qnbo-bfgs`. */
export function slug(label: string): string {
  const s = label
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '');
  return s || 'method';
}
