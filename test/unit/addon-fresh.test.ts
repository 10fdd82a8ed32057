/**
 * `npm run build` rebuilds the native addon when its sources are newer than it
 * (scripts/addon-fresh.mjs), so a checkout that changed the C sources never leaves
 * TypeScript calling functions an older addon lacks. Run on a scratch package whose
 * `node-gyp` on PATH records its arguments (or fails, when asked to).
 */
import t, { type Test } from 'tap';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const SCRIPT = path.resolve(__dirname, '..', '..', 'scripts', 'addon-fresh.mjs');

interface Scratch { root: string; addon: string; source: string; calls: string; bin: string }

/** a package with binding.gyp, one C source and a built addon, all at time `at` */
function scratch(t: Test, at: number): Scratch {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'stratafs-addon-'));
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  const dir = path.join(root, 'native-bindings');
  fs.mkdirSync(path.join(dir, 'src'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'build', 'Release'), { recursive: true });
  const s: Scratch = {
    root,
    addon: path.join(dir, 'build', 'Release', 'stratafs.node'),
    source: path.join(dir, 'src', 'addon.c'),
    calls: path.join(root, 'calls'),
    bin: path.join(root, 'bin'),
  };
  for (const f of [path.join(dir, 'binding.gyp'), s.source, s.addon]) {
    fs.writeFileSync(f, '');
    fs.utimesSync(f, at, at);
  }
  fs.mkdirSync(s.bin);
  fs.writeFileSync(path.join(s.bin, 'node-gyp'), `#!/bin/sh\necho "$@" >> ${JSON.stringify(s.calls)}\nexit \${NODE_GYP_EXIT:-0}\n`, { mode: 0o755 });
  return s;
}

function run(s: Scratch, env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [SCRIPT, s.root], {
    encoding: 'utf8',
    env: { ...process.env, PATH: `${s.bin}:${process.env.PATH ?? ''}`, ...env },
  });
  const calls = fs.existsSync(s.calls) ? fs.readFileSync(s.calls, 'utf8').trim().split('\n') : [];
  return { status: r.status, out: r.stdout.trim(), err: r.stderr.trim(), calls };
}

const T0 = 1_700_000_000;

t.test('an addon newer than its sources is left as it is', async (tt) => {
  const s = scratch(tt, T0);
  const r = run(s);
  tt.equal(r.status, 0);
  tt.same(r.calls, [], 'node-gyp is not run');
  tt.equal(r.out, '', 'nothing printed');
});

t.test('a source changed after the build rebuilds the addon, saying why in one line', async (tt) => {
  const s = scratch(tt, T0);
  fs.utimesSync(s.source, T0 + 60, T0 + 60);
  const r = run(s);
  tt.equal(r.status, 0);
  tt.same(r.calls, [`rebuild --directory ${path.join(s.root, 'native-bindings')}`], 'one rebuild of native-bindings');
  tt.match(r.out, /^build: rebuilding the native addon \(native-bindings\/src\/addon\.c changed since it was built\)$/);
});

t.test('a missing addon is built', async (tt) => {
  const s = scratch(tt, T0);
  fs.rmSync(s.addon);
  const r = run(s);
  tt.equal(r.status, 0);
  tt.equal(r.calls.length, 1);
  tt.match(r.out, /it is not built/);
});

t.test('a failed rebuild fails the build with one line', async (tt) => {
  const s = scratch(tt, T0);
  fs.utimesSync(s.source, T0 + 60, T0 + 60);
  const r = run(s, { NODE_GYP_EXIT: '3' });
  tt.equal(r.status, 1);
  tt.equal(r.calls.length, 1);
  tt.equal(r.err.split('\n').length, 1, 'one error line');
  tt.match(r.err, /^build: the native addon could not be rebuilt \(node-gyp: exit 3\)$/);
});

t.test('a package without native sources is not touched', async (tt) => {
  const s = scratch(tt, T0);
  fs.rmSync(path.join(s.root, 'native-bindings', 'src'), { recursive: true });
  fs.rmSync(s.addon);
  const r = run(s);
  tt.equal(r.status, 0);
  tt.same(r.calls, []);
});
