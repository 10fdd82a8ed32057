#!/usr/bin/env node
/**
 * `npm run build`'s last step: bundles the compiled command (dist/src/cli/main.js and
 * every module and package it loads for a mount) into one file,
 * dist/src/cli/main.bundle.js, so that a mount daemon starts without resolving and
 * reading some seventy files (README, Performance: what it gave).
 *
 * Beside it, main.bundle.json lists every input file with its size and mtime, and the
 * bundle's own: bin/stratafs.js runs the bundle only while all of them are unchanged,
 * else the modules of dist/ (a bundle built from older sources is never run).
 *
 * The bundle sits in dist/src/cli so that paths taken from __dirname (the package root,
 * the native addon) are the same as main.js's. The subcommands a mount never uses
 * (daemon, graphdriver, snapshotter) stay outside it: main.js loads them by relative
 * path, which resolves to their dist/ modules. The native addon is loaded by path at
 * run time, as from dist/.
 *
 * usage: node scripts/bundle.mjs [PACKAGE_ROOT]   (default: this script's package)
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

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
  // an old manifest must never vouch for a new bundle (or the other way round)
  fs.rmSync(manifest, { force: true });
  const result = await esbuild.build({
    entryPoints: [path.join(dir, 'main.js')],
    outfile,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    // constructor names stay as in the modules (errors are told apart by them)
    keepNames: true,
    metafile: true,
    logLevel: 'error',
    absWorkingDir: root,
    plugins: [{
      name: 'mount-path-only',
      setup(b) {
        b.onResolve({ filter: /^\.\/(server|snapshotter|graphdriver)\.js$/ }, (args) =>
          (OUTSIDE.has(args.path) && path.resolve(args.resolveDir) === dir ? { path: args.path, external: true } : undefined));
      },
    }],
  });
  const inputs = Object.keys(result.metafile.inputs).sort().map((f) => manifestEntry(root, f));
  const own = manifestEntry(root, path.relative(root, outfile));
  fs.writeFileSync(manifest, `${JSON.stringify({ bundle: own, inputs })}\n`);
  process.stdout.write(`bundle: ${path.relative(root, outfile)} from ${inputs.length} files\n`);
}

bundle(path.resolve(process.argv[2] ?? path.join(path.dirname(fileURLToPath(import.meta.url)), '..'))).catch((e) => {
  process.stderr.write(`bundle: ${e.message}\n`);
  process.exitCode = 1;
});
