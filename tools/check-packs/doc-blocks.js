/**
 * The TypeScript blocks of the documentation, shared by examples/check-examples.js (which checks them inside the
 * repository) and tools/check-packs/check-packs.js (which runs them in a fresh project with the packed packages).
 *
 * A ```ts block may be preceded by one directive comment:
 *   <!-- example: examples/NAME.ts -->  the block is exactly that file
 *   <!-- snippet: no-run -->           type-checked only
 *   <!-- snippet: skip -->             a fragment: neither type-checked nor run
 */
'use strict';
const fs = require('node:fs');
const path = require('node:path');

/** README.md, docs/*.md (sorted) and packages/* /README.md (sorted) of the repository at `root`. */
function docFiles(root) {
  return [
    path.join(root, 'README.md'),
    ...fs
      .readdirSync(path.join(root, 'docs'))
      .filter((f) => f.endsWith('.md'))
      .sort()
      .map((f) => path.join(root, 'docs', f)),
    ...fs
      .readdirSync(path.join(root, 'packages'))
      .sort()
      .map((d) => path.join(root, 'packages', d, 'README.md'))
      .filter((f) => fs.existsSync(f)),
  ];
}

/** The ```ts blocks of a Markdown file, each with its line and the directive comment directly above it (if any). */
function blocks(file) {
  const text = fs.readFileSync(file, 'utf8');
  const re = /(?:<!--\s*([a-z]+):\s*([^\s]+)\s*-->\s*\n)?```ts\n([\s\S]*?)```/g;
  const found = [];
  let m;
  while ((m = re.exec(text))) {
    const line = text.slice(0, m.index).split('\n').length;
    found.push({ file, line, directive: m[1], value: m[2], code: m[3] });
  }
  return found;
}

/** A file name for block `index` (0-based) of `file`: its path relative to `root` as a slug, e.g. `docs-guide-pipeline-1`. */
function blockName(root, file, index) {
  const slug = path
    .relative(root, file)
    .replace(/\.md$/, '')
    .replace(/[^a-zA-Z0-9]+/g, '-')
    .toLowerCase();
  return `${slug}-${index + 1}`;
}

module.exports = { docFiles, blocks, blockName };
