#!/usr/bin/env node
/**
 * `npm run build`'s last step: bundles the compiled command (dist/src/cli/main.js and
 * every module and package it loads for a mount) into one file,
 * dist/src/cli/main.bundle.js, so that a mount daemon starts without resolving and
 * reading some seventy files (README, Performance: what it gave).
 *
 * Then main.bundle.cache: V8's code cache of the bundle once its mount path's module
 * bodies have run and a scratch overlay has served a mount's first requests without a
 * kernel (src/server/warm-up.ts; made by bin/stratafs.js itself, started by the launcher
 * bin/stratafs, so with the node binary and V8 flags a mount uses), and once the mount
 * path's functions that need a kernel to run (the command line's main, the mount server's
 * mount, mount(2)) are compiled without being called: a mount then compiles none of that
 * code. Where the requests cannot be served, the cache holds the module
 * bodies only, and the build says why in one line.
 *
 * Last, main.bundle.json lists every input file with its size and mtime, and the
 * bundle's and the cache's own: bin/stratafs.js runs the bundle only while all of them
 * are unchanged, else the modules of dist/ (a bundle built from older sources is never
 * run).
 *
 * The bundle sits in dist/src/cli so that paths taken from __dirname (the package root,
 * the native addon) are the same as main.js's. The subcommands a mount never uses
 * (daemon, graphdriver, snapshotter) stay outside it: main.js loads them by relative
 * path, which resolves to their dist/ modules. The native addon is loaded by path at
 * run time, as from dist/.
 *
 * usage: node scripts/bundle.mjs [PACKAGE_ROOT]   (default: this script's package)
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { namesForClassesOnly } from './bundle-names.mjs';

/**
 * The bundle's entry: main.js, and a warm-up the code cache is made with: the modules a
 * mount loads (the daemon, the mount server, the FUSE session), then a mount's first
 * requests served without a kernel (src/server/warm-up.ts; a promise); and the mount
 * path's functions that cannot run without a kernel, which bin/stratafs.js compiles
 * without calling them.
 */
const ENTRY = `module.exports = require('./main.js');
module.exports.warmMountPath = () => {
  require('./daemon.js');
  require('../server/mount-server.js');
  require('../fuse/bridge/index.js');
  return require('../server/warm-up.js').warmUp();
};
module.exports.mountPathFunctions = () => [module.exports.main, require('./detach.js').daemonChannel, require('./daemon.js').serve,
  require('./daemon.js').leaveSession, ...require('../server/warm-up.js').mountPathFunctions()];
`;

const LAZY_DEBUG = path.join(path.dirname(fileURLToPath(import.meta.url)), 'lazy-debug.cjs');

/** what main.js loads by relative path that a mount never runs: kept outside the bundle */
const OUTSIDE = new Set(['./server.js', './snapshotter.js', './graphdriver.js']);

function manifestEntry(root, file) {
  const st = fs.statSync(path.join(root, file));
  return [file, st.size, st.mtimeMs];
}

async function bundle(root) {
  let esbuild;
  try {
    esbuild = await import('esbuild');
  } catch {
    process.stderr.write('bundle: esbuild is not installed (a devDependency): no bundle, mounts load dist/ modules\n');
    return;
  }
  const dir = path.join(root, 'dist', 'src', 'cli');
  const outfile = path.join(dir, 'main.bundle.js');
  const manifest = path.join(dir, 'main.bundle.json');
  const cache = path.join(dir, 'main.bundle.cache');
  // an old manifest must never vouch for a new bundle (or the other way round)
  fs.rmSync(manifest, { force: true });
  fs.rmSync(cache, { force: true });
  const result = await esbuild.build({
    stdin: { contents: ENTRY, resolveDir: dir, sourcefile: 'main.bundle-entry.js', loader: 'js' },
    outfile,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    // constructor names stay as in the modules (errors are told apart by them)
    keepNames: true,
    // no `performance` global in the bundle: its first touch loads node:perf_hooks (3-5 ms
    // of every start), and lru-cache touches it as it loads only to pick its clock, which
    // then is Date (used for TTLs; no cache here has one). Our own code keeps time with
    // process.uptime() (eslint.config.mjs forbids the global in src/).
    define: { performance: 'undefined' },
    metafile: true,
    logLevel: 'error',
    absWorkingDir: root,
    plugins: [{
      name: 'mount-path-only',
      setup(b) {
        // the modules' `debug` is scripts/lazy-debug.cjs, which loads the package when logging is on
        b.onResolve({ filter: /^debug$/ }, (args) =>
          (args.importer === LAZY_DEBUG ? undefined : { path: LAZY_DEBUG }));
        b.onResolve({ filter: /^\.\/(server|snapshotter|graphdriver)\.js$/ }, (args) =>
          (OUTSIDE.has(args.path) && path.resolve(args.resolveDir) === dir ? { path: args.path, external: true } : undefined));
      },
    }],
  });
  const named = namesForClassesOnly(fs.readFileSync(outfile, 'utf8'));
  if (named === undefined) process.stderr.write('bundle: esbuild\'s __name helper is not the one expected: left as is\n');
  else fs.writeFileSync(outfile, named);
  const inputs = Object.keys(result.metafile.inputs).filter((f) => path.basename(f) !== 'main.bundle-entry.js').sort().map((f) => manifestEntry(root, f));
  const own = manifestEntry(root, path.relative(root, outfile));
  const env = { ...process.env, STRATAFS_WRITE_CODE_CACHE: cache };
  delete env.NODE_OPTIONS;
  // through the launcher, which starts node with the V8 flags of a mount (V8 refuses a
  // cache made under other flags)
  const made = spawnSync(path.join(root, 'bin', 'stratafs'), [], { env, stdio: ['ignore', 'inherit', 'pipe'], encoding: 'utf8' });
  let cached;
  if (made.status === 0 && fs.existsSync(cache)) {
    cached = manifestEntry(root, path.relative(root, cache));
    // why the cache holds less than the mount's first requests, if it does
    process.stderr.write(made.stderr);
  } else process.stderr.write(`bundle: no code cache (the bundle is used without): ${(made.stderr ?? made.error?.message ?? '').trim().split('\n')[0]}\n`);
  fs.writeFileSync(manifest, `${JSON.stringify({ bundle: own, ...(cached ? { cache: cached } : {}), inputs })}\n`);
  process.stdout.write(`bundle: ${path.relative(root, outfile)} from ${inputs.length} files${cached ? `, code cache ${cached[1]} bytes` : ''}\n`);
}

bundle(path.resolve(process.argv[2] ?? path.join(path.dirname(fileURLToPath(import.meta.url)), '..'))).catch((e) => {
  process.stderr.write(`bundle: ${e.message}\n`);
  process.exitCode = 1;
});
