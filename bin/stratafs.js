#!/usr/bin/env node
'use strict';
// The Node.js side of `stratafs`: bin/stratafs (a shell launcher) runs it.
//
// It runs dist/src/cli/main.bundle.js (`npm run build`'s one-file bundle of the mount
// path, scripts/bundle.mjs) when main.bundle.json vouches for it: every file the bundle
// was made from, and the bundle itself, still has the size and mtime recorded there.
// Otherwise (no bundle, or a source rebuilt since: never run stale code) it runs the
// modules of dist/. `stratafs --version` says which ran and why.
/* eslint-disable @typescript-eslint/no-require-imports */
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');
const cli = path.join(root, 'dist', 'src', 'cli');

/** the bundle to run, or why not */
function bundle() {
  let manifest;
  try {
    manifest = JSON.parse(fs.readFileSync(path.join(cli, 'main.bundle.json'), 'utf8'));
  } catch {
    return { why: 'no bundle (npm run build makes it)' };
  }
  for (const [file, size, mtimeMs] of [manifest.bundle, ...manifest.inputs]) {
    let st;
    try {
      st = fs.statSync(path.join(root, file));
    } catch {
      return { why: `bundle not used: ${file} is gone` };
    }
    if (st.size !== size || st.mtimeMs !== mtimeMs) return { why: `bundle not used: ${file} changed since it was built` };
  }
  return { file: path.join(cli, 'main.bundle.js') };
}

const chosen = bundle();
const startup = chosen.file ? 'bundle (dist/src/cli/main.bundle.js)' : `modules of dist/, ${chosen.why}`;
require(chosen.file ?? path.join(cli, 'main.js')).main(process.argv.slice(2), startup);
