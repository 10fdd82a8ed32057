/**
 * Write-ahead of a flushed copy (native-bindings/src/copydata.c): a copy that is
 * fsync'ed afterwards starts the writeback of each window it has copied
 * (sync_file_range SYNC_FILE_RANGE_WRITE) while it copies the next, so the fsync
 * does not write the whole file after the copy; an unflushed copy (`volatile`) starts
 * none. The addon runs in a child process under strace, which shows its calls.
 */
import t from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';

const repo = path.resolve(__dirname, '..', '..');
const addon = path.join(repo, 'native-bindings', 'build', 'Release', 'stratafs.node');
const hasStrace = spawnSync('strace', ['-V']).status === 0;

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'stratafs-writeahead-'));
t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));

// larger than two of the addon's write-ahead windows (32 MiB), with data throughout
const MIB = 1 << 20;
const SIZE = 70 * MIB;
const src = path.join(root, 'src');
{
  const chunk = Buffer.alloc(MIB);
  for (let i = 0; i < chunk.length; i++) chunk[i] = (i * 7 + 3) & 0xff;
  const fd = fs.openSync(src, 'w');
  for (let off = 0; off < SIZE; off += MIB) fs.writeSync(fd, chunk, 0, MIB, off);
  fs.closeSync(fd);
}

/** the child: copies src into a new file with `how`, prints the destination's fd */
const child = `
const a = require(${JSON.stringify(addon)});
const fs = require('node:fs');
const [src, dst, how] = process.argv.slice(1);
const s = fs.openSync(src, 'r');
const d = fs.openSync(dst, 'wx', 0o600);
const sync = how !== 'copyUpFile-volatile';
const done = how === 'copyData' ? a.copyData(s, d, ${SIZE}, sync)
  : a.copyUpFile(s, d, { uid: process.getuid(), gid: process.getgid(), mode: 0o600, data: true, sync,
      reflink: false, xattrs: false, privatePrefixes: [], escape: 'x' });
done.then(() => process.stdout.write(String(d)));
`;

interface Traced {
  /** the offsets and lengths of sync_file_range on the copy, in order */
  ranges: [number, number][];
  /** index in the call sequence of the copy's fsync (-1: none) */
  fsyncAt: number;
  same: boolean;
}

function traced(how: string): Traced {
  const dst = path.join(root, `dst-${how}`);
  const log = path.join(root, `strace-${how}`);
  const fd = execFileSync('strace', ['-f', '-qq', '-e', 'trace=sync_file_range,fsync', '-o', log,
    process.execPath, '-e', child, src, dst, how], { encoding: 'utf8' }).trim();
  const ranges: [number, number][] = [];
  let fsyncAt = -1;
  let calls = 0;
  for (const line of fs.readFileSync(log, 'utf8').split('\n')) {
    const sfr = new RegExp(`sync_file_range\\(${fd}, (\\d+), (\\d+), SYNC_FILE_RANGE_WRITE\\) = 0`).exec(line);
    if (sfr) ranges.push([Number(sfr[1]), Number(sfr[2])]);
    if (new RegExp(`fsync\\(${fd}\\) += 0`).test(line)) fsyncAt = calls;
    if (sfr || line.includes('fsync(')) calls++;
  }
  const same = fs.readFileSync(dst).equals(fs.readFileSync(src));
  fs.rmSync(dst);
  return { ranges, fsyncAt, same };
}

t.test('a flushed copy starts the writeback of what it copied before the fsync', { skip: !hasStrace && 'no strace' }, async (t) => {
  for (const how of ['copyUpFile', 'copyData']) {
    const r = traced(how);
    t.ok(r.same, `${how}: the copy has the source's data`);
    t.ok(r.ranges.length >= 2, `${how}: writeback started for ${r.ranges.length} windows during the copy`);
    t.equal(r.ranges[0]?.[0], 0, `${how}: the first window starts at 0`);
    let next = 0;
    for (const [off, len] of r.ranges) {
      t.equal(off, next, `${how}: window at ${off} follows the one before`);
      next = off + len;
    }
    t.ok(next < SIZE, `${how}: the last window is left to the fsync`);
    t.equal(r.fsyncAt, r.ranges.length, `${how}: one fsync, after every window`);
  }
});

t.test('an unflushed copy (volatile) starts no writeback', { skip: !hasStrace && 'no strace' }, async (t) => {
  const r = traced('copyUpFile-volatile');
  t.ok(r.same, 'the copy has the source\'s data');
  t.same(r.ranges, [], 'no sync_file_range');
  t.equal(r.fsyncAt, -1, 'no fsync');
});
