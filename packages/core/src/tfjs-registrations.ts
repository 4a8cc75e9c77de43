import * as fs from 'node:fs';
import * as path from 'node:path';

/**
 * Where the build of @bilevel/core puts the CommonJS bundle of tfjs-core's gradient and chained-op
 * registrations (`scripts/bundle-tfjs-registrations.mjs`); the same path from `src/` and `dist/`.
 */
const TFJS_REGISTRATIONS_FILE = path.join(__dirname, '..', 'vendor', 'tfjs-registrations.js');

if (!fs.existsSync(TFJS_REGISTRATIONS_FILE)) {
  throw new Error(
    `@bilevel/core: ${TFJS_REGISTRATIONS_FILE} is missing (tfjs-core's gradient registrations, made when ` +
      '@bilevel/core is built); run `npm run build -w @bilevel/core` in a checkout, or reinstall the package',
  );
}
// eslint-disable-next-line @typescript-eslint/no-require-imports
require(TFJS_REGISTRATIONS_FILE);
