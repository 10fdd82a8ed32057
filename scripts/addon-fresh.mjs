#!/usr/bin/env node
/**
 * `npm run build`'s first step: rebuilds the native addon when a file it is built from
 * (native-bindings/binding.gyp, native-bindings/src/*) is newer than the built addon, as
 * after a checkout or rebase that changed the C sources. `npm ci` builds the addon at
 * install; without this step the TypeScript built afterwards would call functions an
 * older addon does not have.
 *
 * usage: node scripts/addon-fresh.mjs [PACKAGE_ROOT]   (default: this script's package)
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(process.argv[2] ?? path.join(path.dirname(fileURLToPath(import.meta.url)), '..'));
const dir = path.join(root, 'native-bindings');
const addon = path.join(dir, 'build', 'Release', 'stratafs.node');

/** the addon's inputs with their mtimes (none when the package has no sources) */
function inputs() {
  const src = path.join(dir, 'src');
  if (!fs.existsSync(src)) return [];
  return [path.join(dir, 'binding.gyp'), ...fs.readdirSync(src).map((n) => path.join(src, n))]
    .filter((f) => fs.existsSync(f))
    .map((f) => ({ f, mtime: fs.statSync(f).mtimeMs }));
}

function staleBecause() {
  const files = inputs();
  if (files.length === 0) return null;
  if (!fs.existsSync(addon)) return 'it is not built';
  const built = fs.statSync(addon).mtimeMs;
  const newer = files.filter((x) => x.mtime > built).map((x) => path.relative(root, x.f));
  if (newer.length === 0) return null;
  return `${newer.slice(0, 3).join(', ')}${newer.length > 3 ? ` and ${newer.length - 3} more` : ''} changed since it was built`;
}

const why = staleBecause();
if (why !== null) {
  console.log(`build: rebuilding the native addon (${why})`);
  const r = spawnSync('node-gyp', ['rebuild', '--directory', dir], { stdio: 'inherit', cwd: root });
  if (r.status !== 0) {
    const how = r.error ? r.error.message : `exit ${r.status ?? r.signal}`;
    console.error(`build: the native addon could not be rebuilt (node-gyp: ${how})`);
    process.exit(1);
  }
}
