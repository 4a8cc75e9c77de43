/**
 * Debian's chromium for browser tests: found at its usual paths (or BILEVEL_CHROMIUM). Tests skip with a
 * message naming why when it is not installed, unless BILEVEL_REQUIRE_CHROMIUM=1 (CI), where its absence is
 * a failure.
 */
import * as fs from 'fs';

/** Path of a chromium executable, or null when none is installed. */
export function findChromium(): string | null {
  const candidates = [process.env.BILEVEL_CHROMIUM, '/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'];
  for (const c of candidates) {
    if (c && fs.existsSync(c)) return c;
  }
  return null;
}

/** Why browser tests cannot run here (null: they can). Throws under BILEVEL_REQUIRE_CHROMIUM=1 instead of skipping. */
export function chromiumSkipReason(): string | null {
  if (findChromium()) return null;
  const reason = 'chromium is not installed (apt-get install chromium, or set BILEVEL_CHROMIUM); the report.html browser test is skipped';
  if (process.env.BILEVEL_REQUIRE_CHROMIUM === '1') throw new Error(`BILEVEL_REQUIRE_CHROMIUM=1 but ${reason}`);
  return reason;
}
