/**
 * The start-up bundle (scripts/bundle.mjs, run by `npm run build`): bin/stratafs.js runs
 * dist/src/cli/main.bundle.js, with its V8 code cache, only while every file it was
 * built from is unchanged, and the modules of dist/ otherwise (no bundle, a source
 * rebuilt since, the bundle or its cache changed); a cache V8 refuses is compiled
 * around. A mount works each way. The fallback cases run in a private copy of the
 * package (bin/, dist/src/, package.json; node_modules and the addon linked), so the
 * worktree's own bundle is never touched.
 */
import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import Module from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';
import { daemonsFor, plainExec, run, runOk, waitFor } from '../lib/proc';
import { scratchLayers } from '../lib/tmp';

const ROOT = path.resolve(__dirname, '..', '..');

function isMounted(mnt: string): boolean {
  return fs.readFileSync('/proc/mounts', 'utf8').split('\n').some((l) => l.split(' ')[1] === mnt);
}

/** a private copy of the package; its bundle built by the real scripts/bundle.mjs (its stderr in `built`) */
async function packageCopy(t: Test, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stratafs-bundle-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.cpSync(path.join(ROOT, 'bin'), path.join(dir, 'bin'), { recursive: true });
  fs.cpSync(path.join(ROOT, 'dist', 'src'), path.join(dir, 'dist', 'src'), { recursive: true });
  fs.copyFileSync(path.join(ROOT, 'package.json'), path.join(dir, 'package.json'));
  fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(dir, 'node_modules'));
  fs.symlinkSync(path.join(ROOT, 'native-bindings'), path.join(dir, 'native-bindings'));
  for (const f of ['main.bundle.js', 'main.bundle.json', 'main.bundle.cache']) fs.rmSync(path.join(dir, 'dist', 'src', 'cli', f), { force: true });
  const r = await run(...plainExec([process.execPath, path.join(ROOT, 'scripts', 'bundle.mjs'), dir]), { env });
  if (r.code !== 0) throw new Error(`scripts/bundle.mjs: exit ${r.code}\n${r.stderr}`);
  built.set(dir, r.stderr);
  return dir;
}

/** what scripts/bundle.mjs said on stderr, by package copy */
const built = new Map<string, string>();

async function codeLine(pkg: string): Promise<string> {
  const out = await runOk(...plainExec([path.join(pkg, 'bin', 'stratafs'), '--version']));
  return out.split('\n').find((l) => l.startsWith('code: ')) ?? `(no code line in: ${out})`;
}

/** mounts through PKG's launcher, reads a lower file, unmounts; the file's text */
async function mountAndRead(t: Test, pkg: string, env: NodeJS.ProcessEnv = process.env): Promise<{ text: string; environ: string[] }> {
  const { lower, mnt, layerOption } = await scratchLayers(t, 'bundle-mnt');
  fs.writeFileSync(path.join(lower, 'hello'), 'from the lower layer\n');
  await runOk(...plainExec([path.join(pkg, 'bin', 'stratafs'), '-o', layerOption, mnt]), { env, timeoutMs: 20000 });
  const text = fs.readFileSync(path.join(mnt, 'hello'), 'utf8');
  const [pid] = daemonsFor(mnt);
  const environ = pid === undefined ? [] : fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
  await runOk('fusermount3', ['-u', mnt]);
  t.ok(await waitFor(() => daemonsFor(mnt).length === 0, 10000), 'the daemon exits after the unmount');
  return { text, environ };
}

t.test('the built tree runs the bundle (so the other CLI tests mount through it)', async (t) => {
  t.equal(await codeLine(ROOT), 'code: bundle (dist/src/cli/main.bundle.js, code cache used)');
});

t.test('a bundle that matches its sources serves a mount', async (t) => {
  const pkg = await packageCopy(t);
  t.equal(await codeLine(pkg), 'code: bundle (dist/src/cli/main.bundle.js, code cache used)');
  t.equal((await mountAndRead(t, pkg)).text, 'from the lower layer\n', 'the lower file through the mount');
});

t.test('a source rebuilt after the bundle: the modules of dist/ run, never the stale bundle', async (t) => {
  const pkg = await packageCopy(t);
  const main = path.join(pkg, 'dist', 'src', 'cli', 'main.js');
  // a rebuilt main.js whose help text differs: which code ran shows in the output
  fs.writeFileSync(main, fs.readFileSync(main, 'utf8').replace('usage: stratafs ', 'usage: stratafs-rebuilt '));
  t.equal(await codeLine(pkg), 'code: modules of dist/, bundle not used: dist/src/cli/main.js changed since it was built');
  const help = await runOk(...plainExec([path.join(pkg, 'bin', 'stratafs'), '--help']));
  t.match(help, /^usage: stratafs-rebuilt /, 'the rebuilt module ran');
  t.equal((await mountAndRead(t, pkg)).text, 'from the lower layer\n', 'a mount works from the modules');
});

t.test('a module deep in the mount path rewritten with the same bytes still counts as changed', async (t) => {
  const pkg = await packageCopy(t);
  const deep = path.join(pkg, 'dist', 'src', 'overlay', 'index.js');
  const later = new Date(fs.statSync(deep).mtimeMs + 5000);
  fs.utimesSync(deep, later, later);
  t.equal(await codeLine(pkg), 'code: modules of dist/, bundle not used: dist/src/overlay/index.js changed since it was built');
});

t.test('a missing or edited bundle, a missing manifest: the modules of dist/ run', async (t) => {
  const pkg = await packageCopy(t);
  const cli = path.join(pkg, 'dist', 'src', 'cli');
  fs.appendFileSync(path.join(cli, 'main.bundle.js'), '\n');
  t.equal(await codeLine(pkg), 'code: modules of dist/, bundle not used: dist/src/cli/main.bundle.js changed since it was built');
  fs.rmSync(path.join(cli, 'main.bundle.js'));
  t.equal(await codeLine(pkg), 'code: modules of dist/, bundle not used: dist/src/cli/main.bundle.js is gone');
  fs.rmSync(path.join(cli, 'main.bundle.json'));
  t.equal(await codeLine(pkg), 'code: modules of dist/, no bundle (npm run build makes it)');
  t.equal((await mountAndRead(t, pkg)).text, 'from the lower layer\n', 'a mount works without a bundle');
});

t.test('a changed code cache falls back to the modules; one V8 refuses is compiled around', async (t) => {
  const pkg = await packageCopy(t);
  const cache = path.join(pkg, 'dist', 'src', 'cli', 'main.bundle.cache');
  const { size } = fs.statSync(cache);
  fs.appendFileSync(cache, 'x');
  t.equal(await codeLine(pkg), 'code: modules of dist/, bundle not used: dist/src/cli/main.bundle.cache changed since it was built');
  // a manifest that vouches for a cache that is not V8's data: V8 rejects it, the bundle compiles
  fs.writeFileSync(cache, Buffer.alloc(size, 0x5a));
  const manifestFile = path.join(pkg, 'dist', 'src', 'cli', 'main.bundle.json');
  const manifest = JSON.parse(fs.readFileSync(manifestFile, 'utf8')) as { cache: [string, number, number] };
  manifest.cache[2] = fs.statSync(cache).mtimeMs;
  fs.writeFileSync(manifestFile, JSON.stringify(manifest));
  t.equal(await codeLine(pkg), 'code: bundle (dist/src/cli/main.bundle.js, code cache rejected by V8)');
  t.equal((await mountAndRead(t, pkg)).text, 'from the lower layer\n', 'a mount works with the rejected cache');
});

/** a foreground mount through the launcher (the bundle): its stderr once unmounted */
async function foreground(t: Test, args: string[], env: NodeJS.ProcessEnv): Promise<string> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stratafs-bundle-fg-'));
  const [lower, upper, work, mnt] = ['lower', 'upper', 'work', 'mnt'].map((d) => path.join(dir, d)) as [string, string, string, string];
  for (const d of [lower, upper, work, mnt]) fs.mkdirSync(d);
  fs.writeFileSync(path.join(lower, 'hello'), 'hi\n');
  const [cmd, argv] = plainExec([path.join(ROOT, 'bin', 'stratafs'), ...args, '-o', `lowerdir=${lower},upperdir=${upper},workdir=${work}`, mnt]);
  const child = spawn(cmd, argv, { env, stdio: ['ignore', 'ignore', 'pipe'] });
  t.teardown(async () => {
    if (isMounted(mnt)) await run('fusermount3', ['-u', '-z', mnt]);
    if (child.exitCode === null) child.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise((r) => child.on('close', r));
  t.ok(await waitFor(() => isMounted(mnt), 20000), `mounted (stderr: ${stderr})`);
  t.equal(fs.readFileSync(path.join(mnt, 'hello'), 'utf8'), 'hi\n');
  await runOk('fusermount3', ['-u', mnt]);
  await exited;
  return stderr;
}

t.test('logging in the bundle (its debug loads when logging is on): -d, DEBUG=, neither', async (t) => {
  t.equal(await codeLine(ROOT), 'code: bundle (dist/src/cli/main.bundle.js, code cache used)');
  const env = { ...process.env };
  delete env.DEBUG;
  t.match(await foreground(t, ['-d'], env), /stratafs:server mounted .*requests by opcode/s, '-d: the mount and its request counts logged');
  const only = await foreground(t, ['-f'], { ...env, DEBUG: 'stratafs:server' });
  t.match(only, /stratafs:server mounted /, 'DEBUG=stratafs:server: its lines');
  t.notMatch(only, /stratafs:daemon/, 'and no other namespace');
  t.equal(await foreground(t, ['-f'], env), '', 'neither: nothing on stderr');
});

t.test('the mount daemon starts without NODE_EXTRA_CA_CERTS (it makes no TLS connection)', async (t) => {
  const { text, environ } = await mountAndRead(t, ROOT, { ...process.env, NODE_EXTRA_CA_CERTS: '/etc/ssl/certs/ca-certificates.crt' });
  t.equal(text, 'from the lower layer\n');
  t.ok(environ.length > 0, 'the daemon environment was read');
  t.notOk(environ.some((e) => e.startsWith('NODE_EXTRA_CA_CERTS=')), 'not in the daemon environment');
});

/** the launcher's V8 flags (a code cache is refused under other flags) */
function launcherFlags(): string[] {
  const heap = /^heap=(\S+)$/m.exec(fs.readFileSync(path.join(ROOT, 'bin', 'stratafs'), 'utf8'));
  return heap ? [heap[1] as string] : [];
}

/**
 * The module of the bundle (its `// dist/src/...` line, as `fuse/bridge/session.js`) that
 * holds source position POS of the script made of BUNDLE's text as bin/stratafs.js makes
 * it (Module.wrap); undefined past its text or before the first module.
 */
function bundleModuleAt(bundle: string, pos: number): string | undefined {
  const at = pos - Module.wrap('\0').indexOf('\0');
  if (at < 0 || at >= bundle.length) return undefined;
  let module: string | undefined;
  for (const m of bundle.matchAll(/^\/\/ dist\/src\/(\S+\.js)$/gm)) {
    if ((m.index as number) > at) break;
    module = m[1];
  }
  return module;
}

/**
 * The functions V8 compiles during a foreground mount, a first `ls -l`, a read,
 * a listing of xattr names and the unmount, in a daemon that runs PKG's bundle from its code cache as
 * bin/stratafs.js does: V8 prints the bytecode of every function it compiles from then
 * on (--print-bytecode, set once the bundle is compiled; a function taken from the cache
 * is not compiled, so not printed). Each by its name, and also as `name (module)` where
 * its first source position lies in a module of the bundle (methods of two classes may
 * share a name: the session's start, the mount server's, the idle releaser's). The
 * printed bytecode does not name the script: a Node.js function whose position falls in
 * a module's range is named with it too, which can only make a check below fail.
 */
async function compiledDuringMount(t: Test, pkg: string): Promise<Set<string>> {
  const { dir, lower, mnt, layerOption } = await scratchLayers(t, 'bundle-compiled');
  fs.mkdirSync(path.join(lower, 'etc'));
  fs.writeFileSync(path.join(lower, 'etc', 'hostname'), 'lower\n');
  const daemon = path.join(dir, 'daemon.js');
  fs.writeFileSync(daemon, `
const fs = require('node:fs'), vm = require('node:vm'), Module = require('node:module'), v8 = require('node:v8');
const [cli, ...argv] = process.argv.slice(2);
const file = cli + '/main.bundle.js';
const script = new vm.Script(Module.wrap(fs.readFileSync(file, 'utf8')), { filename: file, cachedData: fs.readFileSync(cli + '/main.bundle.cache') });
if (script.cachedDataRejected) throw new Error('the code cache was rejected');
v8.setFlagsFromString('--print-bytecode');
const m = { exports: {} };
script.runInThisContext().call(m.exports, m.exports, Module.createRequire(file), m, file, cli);
m.exports.main(argv);
`);
  // the printed bytecode into a file: a pipe this process reads would block the daemon
  // while this process waits in a synchronous read of the mount
  const outFile = path.join(dir, 'bytecode.txt');
  const outFd = fs.openSync(outFile, 'w');
  const child = spawn('env', ['-u', 'NODE_OPTIONS', process.execPath, ...launcherFlags(), daemon, path.join(pkg, 'dist', 'src', 'cli'), '-f', '-o', layerOption, mnt],
    { stdio: ['ignore', outFd, 'pipe'] });
  fs.closeSync(outFd);
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise((r) => child.on('close', r));
  t.teardown(async () => {
    if (isMounted(mnt)) await run('fusermount3', ['-u', '-z', mnt]);
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  t.ok(await waitFor(() => isMounted(mnt), 20000), `mounted (stderr: ${stderr})`);
  await runOk('ls', ['-l', mnt, path.join(mnt, 'etc')]);
  t.equal(fs.readFileSync(path.join(mnt, 'etc', 'hostname'), 'utf8'), 'lower\n');
  // the list of a file's xattr names (its size, then the names), as containers-storage's
  // diff asks of every entry
  await runOk('getfattr', ['-h', '-d', path.join(mnt, 'etc', 'hostname')]);
  await runOk('fusermount3', ['-u', mnt]);
  await exited;
  t.equal(stderr, '', 'the daemon said nothing on stderr (its cache was used)');
  const bundle = fs.readFileSync(path.join(pkg, 'dist', 'src', 'cli', 'main.bundle.js'), 'utf8');
  const compiled = new Set<string>();
  // a function's block: its name, then its bytecodes, a source position (`  123 S> `) before some
  for (const block of fs.readFileSync(outFile, 'utf8').split(/^(?=\[generated bytecode for function: )/m)) {
    const name = /^\[generated bytecode for function: (\S+)/.exec(block)?.[1];
    if (name === undefined) continue;
    compiled.add(name);
    const pos = /^\s*(\d+) [SE]> /m.exec(block)?.[1];
    const module = pos === undefined ? undefined : bundleModuleAt(bundle, Number(pos));
    if (module !== undefined) compiled.add(`${name} (${module})`);
  }
  return compiled;
}

/** functions of the request path (session, decode, handlers, overlay, replies): no other code has these names */
const REQUEST_PATH = ['onBatch', 'dispatch', 'negotiate', 'LOOKUP', 'GETATTR', 'READDIRPLUS', 'GETXATTR', 'LISTXATTR', 'OPEN', 'RELEASE',
  'xattrList', 'encodeXattrSize', 'encodeEntry', 'encodeAttr', 'PlusReply', 'mergeListing', 'openState', 'nodeFor', 'toAttr'];

/**
 * functions of the mount itself, which the build cannot run without a kernel (it compiles
 * them without calling them, src/server/warm-up.ts mountPathFunctions); no other code has
 * these names, or they are named with their module (the session's and the mount server's
 * `start`)
 */
const MOUNT_PATH = ['main', 'serve', 'mount', 'endedBehindUs', 'prepareMountpoint', 'mountFuse', 'checkNotCrossed', 'checkOutsideServed',
  'daemonChannel', 'mountedAt', 'MountServer', 'IdleRelease', 'start (fuse/bridge/session.js)', 'start (server/mount-server.js)',
  ...['start', 'settle', 'mountEnded', 'intervalFromEnv', 'cpuUtilization'].map((f) => `${f} (server/idle-memory.js)`)];

t.test('the code cache of npm run build holds the mount path and the request path: a mount and its first walk compile none of them', async (t) => {
  const compiled = await compiledDuringMount(t, ROOT);
  // Node.js's own functions are never in the bundle's cache: the Buffer method every request's decoding calls
  t.ok(compiled.has('readUInt32LE'), 'what the cache does not hold is printed');
  // a function of the bundle compiled during the mount is named with its module: the
  // session's request counts, read only at the daemon's end, are not in the cache
  t.ok(compiled.has('requestCounts (fuse/bridge/session.js)'), 'the bundle\'s functions are named with their module');
  t.same(MOUNT_PATH.filter((f) => compiled.has(f)), [], 'none of the mount\'s own functions compiled during the mount');
  t.same(REQUEST_PATH.filter((f) => compiled.has(f)), [], 'none of the request path compiled during the mount');
});

t.test('npm run build leaves nothing in the temp dir; where the requests cannot be served the cache holds the module bodies', async (t) => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'stratafs-bundle-tmp-'));
  t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }));
  const pkg = await packageCopy(t, { ...process.env, TMPDIR: tmp });
  t.equal(built.get(pkg), '', 'no complaint');
  t.same(fs.readdirSync(tmp), [], 'the scratch overlay is gone');
  // no temp dir to serve a scratch overlay in: the build goes on, says why in one line
  const failed = await packageCopy(t, { ...process.env, TMPDIR: path.join(tmp, 'missing') });
  t.match(built.get(failed), /^bundle: the code cache holds the module bodies only \(no request served: ENOENT[^\n]*\)\n$/);
  t.equal(await codeLine(failed), 'code: bundle (dist/src/cli/main.bundle.js, code cache used)');
  t.ok(fs.statSync(path.join(failed, 'dist', 'src', 'cli', 'main.bundle.cache')).size < fs.statSync(path.join(pkg, 'dist', 'src', 'cli', 'main.bundle.cache')).size,
    'a smaller cache than the one with the request path');
});
