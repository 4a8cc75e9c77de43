// Tests run core's TypeScript sources, which load vendor/tfjs-registrations.js: make it when a checkout has
// not been built yet.
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

module.exports = function globalSetup() {
  const file = path.join(__dirname, '..', 'vendor', 'tfjs-registrations.js');
  if (!fs.existsSync(file)) {
    execFileSync(process.execPath, [path.join(__dirname, 'bundle-tfjs-registrations.mjs')], { stdio: 'inherit' });
  }
};
