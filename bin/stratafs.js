#!/usr/bin/env node
'use strict';
// The Node.js side of `stratafs`: bin/stratafs (a shell launcher) runs it.
//
// It runs dist/src/cli/main.bundle.js (`npm run build`'s one-file bundle of the mount
// path, scripts/bundle.mjs) when main.bundle.json vouches for it: every file the bundle
// was made from, the bundle itself and its V8 code cache still have the size and mtime
// recorded there. Otherwise (no bundle, or a source rebuilt since: never run stale code)
// it runs the modules of dist/, as it does for the subcommands the bundle leaves out.
// `stratafs --version` says which ran and why.
/* eslint-disable @typescript-eslint/no-require-imports */
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');
const cli = path.join(root, 'dist', 'src', 'cli');
const BUNDLE = path.join(cli, 'main.bundle.js');
const CODE_CACHE = path.join(cli, 'main.bundle.cache');

/**
 * Compiles and runs the bundle as require() would, with V8's code cache of it when given
 * (compiled functions: no parsing or compiling of what the cache holds). V8 checks the
 * cache's version, flags and source length and compiles afresh when they differ.
 */
function runBundle(cachedData) {
  const vm = require('node:vm');
  const Module = require('node:module');
  const script = new vm.Script(Module.wrap(fs.readFileSync(BUNDLE, 'utf8')), { filename: BUNDLE, cachedData });
  const m = { exports: {} };
  script.runInThisContext().call(m.exports, m.exports, Module.createRequire(BUNDLE), m, BUNDLE, cli);
  return { exports: m.exports, script };
}

/** the bundle's code cache to use, or why not */
function bundle() {
  let manifest;
  try {
    manifest = JSON.parse(fs.readFileSync(path.join(cli, 'main.bundle.json'), 'utf8'));
  } catch {
    return { why: 'no bundle (npm run build makes it)' };
  }
  for (const [file, size, mtimeMs] of [manifest.bundle, ...(manifest.cache ? [manifest.cache] : []), ...manifest.inputs]) {
    let st;
    try {
      st = fs.statSync(path.join(root, file));
    } catch {
      return { why: `bundle not used: ${file} is gone` };
    }
    if (st.size !== size || st.mtimeMs !== mtimeMs) return { why: `bundle not used: ${file} changed since it was built` };
  }
  return { cachedData: manifest.cache ? fs.readFileSync(CODE_CACHE) : undefined };
}

/**
 * Compiles the functions FUNCTIONS() lists without calling them (the mount path the build
 * cannot run without a kernel), so that the code cache made next holds their bytecode.
 * V8 compiles a function at its first call; its runtime function
 * %PrepareFunctionForOptimization compiles one without calling it (and gives it a
 * feedback vector, which is not part of the cache). It is reachable only with
 * --allow-natives-syntax, which is on only while the one-line compiler is parsed: V8
 * accepts a code cache only under the flags it was made with, and a mount runs without
 * it. Returns why not all were compiled, if so (another V8).
 */
function compileAhead(functions) {
  const v8 = require('node:v8');
  let compile;
  try {
    v8.setFlagsFromString('--allow-natives-syntax');
    compile = new Function('f', '%PrepareFunctionForOptimization(f)');
  } catch (e) {
    return e.message;
  } finally {
    v8.setFlagsFromString('--no-allow-natives-syntax');
  }
  try {
    for (const f of functions()) compile(f);
  } catch (e) {
    return e.message;
  }
  return undefined;
}

const argv = process.argv.slice(2);
if (process.env.STRATAFS_WRITE_CODE_CACHE) {
  // scripts/bundle.mjs: compile the bundle, run its mount path (module bodies, then a
  // mount's first requests without a kernel), keep what V8 compiled (the node binary and
  // flags a mount runs with); the module bodies' cache when the requests fail
  const { exports, script } = runBundle(undefined);
  exports.warmMountPath().catch((e) => {
    process.stderr.write(`bundle: the code cache holds the module bodies only (no request served: ${e.message})\n`);
  }).then(() => {
    const why = compileAhead(() => exports.mountPathFunctions());
    if (why) process.stderr.write(`bundle: the mount path's own functions are compiled at each mount (${why})\n`);
    fs.writeFileSync(process.env.STRATAFS_WRITE_CODE_CACHE, script.createCachedData());
  });
} else if (argv[0] === 'daemon' || argv[0] === 'graphdriver' || argv[0] === 'snapshotter') {
  require(path.join(cli, 'main.js')).main(argv, 'modules of dist/ (not in the bundle)');
} else {
  const chosen = bundle();
  if (chosen.why) require(path.join(cli, 'main.js')).main(argv, `modules of dist/, ${chosen.why}`);
  else {
    const { exports, script } = runBundle(chosen.cachedData);
    const cache = chosen.cachedData === undefined ? 'no code cache' : script.cachedDataRejected ? 'code cache rejected by V8' : 'code cache used';
    exports.main(argv, `bundle (dist/src/cli/main.bundle.js, ${cache})`);
  }
}
