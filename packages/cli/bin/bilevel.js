#!/usr/bin/env node
// The `bilevel` command (package.json "bin"). It is a committed file, not the build output itself, so that npm
// links node_modules/.bin/bilevel when it installs the workspace — in the repository `npm ci` runs before
// dist/ is built, and npm links no command whose file is missing (`npx bilevel` then asks the registry and
// fails with 404). The command itself is dist/main.js.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const main = path.join(__dirname, '..', 'dist', 'main.js');
if (!fs.existsSync(main)) {
  process.stderr.write(
    `bilevel: the command is not built yet (${main} is missing); build it with \`npx nx run @bilevel/cli:build\` ` +
      '(or `npm run build`) and run it again\n',
  );
  process.exit(2);
}
require(main);
