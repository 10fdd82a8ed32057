/**
 * Crash safety: the daemon dies (SIGKILL) in the middle of copy-up of a large lower
 * file, create, rename, unlink of a lower file (whiteout) and link, either at a named
 * step (STRATAFS_FAULTS, src/overlay/faults.ts) or at a random moment. Then stratafs is
 * mounted again over the stale mountpoint, and:
 *   - the command says the mountpoint was stale, in one line, and mounts;
 *   - the work dir holds no leftovers (emptied at mount);
 *   - every name, in the merged view and in the upper, is the old or the new version,
 *     never a partial copy;
 *   - what was fsync'd before the crash is there.
 * Injected failures (`fail`) must leave the same: no trace in the upper or work dir.
 */
import t from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import { daemonsFor, isStale, leftovers, list, makeLayers, mountWith, py, pyStarted, waitFor, type Layers } from './lib';

const sha = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');
const BIG = 64 << 20;

/** Reads NAMES through the mount in a child: name -> sha256 of the content, or null when absent. */
const READ = `
import hashlib, json, os, sys
out = {}
for n in sys.argv[2:]:
    p = os.path.join(sys.argv[1], n)
    try:
        with open(p, 'rb') as f:
            out[n] = hashlib.sha256(f.read()).hexdigest()
    except FileNotFoundError:
        out[n] = None
print(json.dumps(out))
`;

/** One operation through the mount, by name (see the table below). */
const OPS = `
import os, sys
m, op = sys.argv[1], sys.argv[2]
p = lambda n: os.path.join(m, n)
os.stat(m)
print('ready', flush=True)
def fsync_write(path, data, flags):
    fd = os.open(path, flags, 0o644)
    os.write(fd, data)
    os.fsync(fd)
    os.close(fd)
if op == 'copyup':
    fsync_write(p('big'), b'X', os.O_WRONLY | os.O_APPEND)
elif op == 'create':
    fsync_write(p('new'), b'N' * 5000, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
elif op == 'rename':
    os.rename(p('a'), p('b'))
elif op == 'unlink':
    os.unlink(p('w'))
elif op == 'unlink-upper':
    os.chmod(p('w'), 0o600)
    print('copied', flush=True)
    os.unlink(p('w'))
elif op == 'link':
    os.unlink(p('g'))
    print('whiteout', flush=True)
    os.link(p('f'), p('g'))
print('done', flush=True)
`;

interface Contents {
  big: Buffer;
  a: string;
  b: string;
  w: string;
  f: string;
  g: string;
}

function populate(l: Layers): Contents {
  const c: Contents = { big: randomBytes(BIG), a: 'A'.repeat(3000), b: 'B'.repeat(7000), w: 'W'.repeat(100), f: 'F'.repeat(9000), g: 'G' };
  fs.writeFileSync(`${l.lower}/big`, c.big);
  for (const n of ['a', 'b', 'w', 'f', 'g'] as const) fs.writeFileSync(`${l.lower}/${n}`, c[n]);
  return c;
}

/** The versions each name may have after the operation was cut short (null: absent). */
function allowed(op: string, c: Contents, done: string[]): Record<string, (string | null)[]> {
  const old = { big: sha(c.big), a: sha(c.a), b: sha(c.b), w: sha(c.w), f: sha(c.f), g: sha(c.g) };
  const base: Record<string, (string | null)[]> = {
    big: [old.big], a: [old.a], b: [old.b], w: [old.w], f: [old.f], g: [old.g], new: [null],
  };
  switch (op) {
    case 'copyup': base.big = [old.big, sha(Buffer.concat([c.big, Buffer.from('X')]))]; break;
    // data written but not yet fsync'd may be lost with the daemon (with writeback=on)
    case 'create': base.new = done.includes('done') ? [sha('N'.repeat(5000))] : [null, sha(''), sha('N'.repeat(5000))]; break;
    case 'rename': base.a = [old.a, null]; base.b = [old.b, old.a]; break;
    case 'unlink': case 'unlink-upper': base.w = [old.w, null]; break;
    case 'link': base.g = done.includes('whiteout') ? [null, old.f] : [old.g, null, old.f]; break;
  }
  return base;
}

/** Regular files and whiteouts (c 0/0) in the upper, by name (top level: these tests use no dirs). */
function upperState(l: Layers): Record<string, string> {
  const out: Record<string, string> = {};
  for (const n of list(l.upper)) {
    const s = fs.lstatSync(`${l.upper}/${n}`);
    if (s.isCharacterDevice() && s.rdev === 0) out[n] = 'whiteout';
    else if (s.isFile()) out[n] = sha(fs.readFileSync(`${l.upper}/${n}`));
    else out[n] = `type ${s.mode.toString(8)}`;
  }
  return out;
}

async function remountAndCheck(t: tap.Test, l: Layers, c: Contents, op: string, done: string[]): Promise<void> {
  t.ok(await waitFor(() => daemonsFor(l.mnt).length === 0 && isStale(l.mnt), 10_000), 'the daemon is gone, the mountpoint stale');
  const again = await mountWith(l);
  t.equal(again.code, 0, `mounting again over the stale mountpoint works ${again.stderr.trim()}`);
  t.match(again.stderr, /stale/, 'and says it was stale');
  t.equal(again.stderr.trim().split('\n').length, 1, 'in one line');
  t.same(list(`${l.work}/work`), [], 'no leftovers in the work dir');
  const may = allowed(op, c, done);
  const names = Object.keys(may);
  const r = await py(READ, [l.mnt, ...names]);
  t.equal(r.status, 0, r.stderr);
  const merged = JSON.parse(r.stdout) as Record<string, string | null>;
  for (const n of names) t.ok(may[n].includes(merged[n]), `${op}: merged ${n} is an old or new version`);
  const up = upperState(l);
  for (const [n, v] of Object.entries(up)) {
    const ok = v === 'whiteout' ? may[n]?.includes(null) : may[n]?.includes(v);
    t.ok(ok, `${op}: upper ${n} (${v.slice(0, 12)}) is a whole old or new version`);
  }
  // the operation completed before the crash must have reached the disk
  if (done.includes('done') && op === 'copyup') t.equal(merged.big, may.big[1], 'fsync\'d append is there');
  if (done.includes('done') && op === 'create') t.equal(merged.new, sha('N'.repeat(5000)), 'fsync\'d new file is there');
}

const cases: [op: string, point: string][] = [
  ['copyup', 'copyup.after-data'],
  ['copyup', 'copyup.before-rename'],
  ['copyup', 'copyup.after-rename'],
  ['copyup', 'sync'],
  ['create', 'create.before-install'],
  ['create', 'sync'],
  ['rename', 'copyup.after-data'],
  ['rename', 'rename.after-mark'],
  ['rename', 'rename.after-rename'],
  ['unlink-upper', 'unlink.before-exchange'],
  ['unlink-upper', 'unlink.after-exchange'],
  ['link', 'copyup.before-rename'],
  ['link', 'link.before-rename'],
];

/** Points where the work dir holds an entry that the crash leaves behind. */
const LEAVES_LEFTOVER = new Set(['create.before-install', 'link.before-rename', 'unlink.after-exchange']);
/**
 * Points inside a regular file's copy-up: the copy is an O_TMPFILE, with no name until
 * it is linked into the upper, so the crash leaves nothing in the work dir (the
 * `link` case has the shared whiteout there).
 */
const UNNAMED_COPY = new Set(['copyup.after-data', 'copyup.before-rename']);

for (const [op, point] of cases) {
  t.test(`SIGKILL at ${point} during ${op}`, async (t) => {
    const l = makeLayers(t, 'crash');
    const c = populate(l);
    const m = await mountWith(l, { STRATAFS_FAULTS: `${point}:kill` });
    t.equal(m.code, 0, m.stderr);
    const r = await py(OPS, [l.mnt, op]);
    t.not(r.status, 0, 'the operation did not complete: the daemon died at the fault point');
    if (LEAVES_LEFTOVER.has(point)) {
      t.ok(await waitFor(() => daemonsFor(l.mnt).length === 0, 10_000), 'daemon gone');
      t.not(list(`${l.work}/work`).length, 0, 'the crash left something in the work dir (to be cleaned)');
    }
    if (UNNAMED_COPY.has(point) && (op === 'copyup' || op === 'rename')) {
      t.ok(await waitFor(() => daemonsFor(l.mnt).length === 0, 10_000), 'daemon gone');
      t.same(list(`${l.work}/work`), [], 'the unfinished copy had no name: nothing left in the work dir');
    }
    await remountAndCheck(t, l, c, op, r.stdout.trim().split('\n'));
  });
}

t.test('SIGKILL at random moments', async (t) => {
  const seed = Number(process.env.STRATAFS_SEED ?? Date.now() % 100000);
  t.comment(`seed ${seed} (STRATAFS_SEED=${seed} replays the delays)`);
  let x = seed || 1;
  const rand = (): number => ((x = (x * 1103515245 + 12345) % 2147483648) / 2147483648);
  const once = ['copyup', 'copyup', 'copyup', 'create', 'rename', 'unlink', 'unlink-upper', 'link'];
  const ops = [...once, ...once];
  for (const op of ops) {
    const l = makeLayers(t, 'crashr');
    const c = populate(l);
    t.equal((await mountWith(l)).code, 0);
    const [pid] = daemonsFor(l.mnt);
    const running = pyStarted(OPS, [l.mnt, op]);
    await running.ready;
    // a copy-up of 64 MiB takes tens of ms; the other ops a few
    await new Promise((r) => setTimeout(r, Math.floor(rand() * (op === 'copyup' ? 120 : 12))));
    process.kill(pid, 'SIGKILL');
    const r = await running.done;
    t.comment(`${op}: ${r.status === 0 ? 'completed before the kill' : 'cut short'}`);
    await remountAndCheck(t, l, c, op, r.stdout.trim().split('\n'));
  }
});

t.test('injected failures undo what they did', async (t) => {
  const l = makeLayers(t, 'crashf');
  const c = populate(l);
  const m = await mountWith(l, { STRATAFS_FAULTS: 'copyup.before-rename:fail@1,create.before-install:fail@1,link.before-rename:fail@1' });
  t.equal(m.code, 0, m.stderr);
  for (const op of ['copyup', 'create', 'link']) {
    const r = await py(OPS, [l.mnt, op]);
    t.not(r.status, 0, `${op} fails once`);
    t.match(r.stderr, /Input\/output error|EIO|Errno 5/, `${op}: with EIO`);
    t.same(leftovers(`${l.work}/work`), [], `${op}: nothing left in the work dir`);
  }
  const up = upperState(l);
  t.notOk('big' in up, 'no copy of big in the upper');
  t.notOk('new' in up, 'no new file in the upper');
  t.equal(up.f, sha(c.f), 'f was copied up whole for the link');
  t.equal(up.g, 'whiteout', 'g is still a whiteout');
  for (const op of ['copyup', 'create']) {
    const r = await py(OPS, [l.mnt, op]);
    t.equal(r.status, 0, `${op} works the second time ${r.stderr}`);
  }
  const r = await py('import os,sys; os.link(sys.argv[1]+"/f", sys.argv[1]+"/g")', [l.mnt]);
  t.equal(r.status, 0, `link works the second time ${r.stderr}`);
  const merged = JSON.parse((await py(READ, [l.mnt, 'big', 'new', 'g'])).stdout) as Record<string, string>;
  t.equal(merged.big, sha(Buffer.concat([c.big, Buffer.from('X')])));
  t.equal(merged.new, sha('N'.repeat(5000)));
  t.equal(merged.g, sha(c.f));
});
