/**
 * Writes from several processes at once through a real mount, with kernel passthrough
 * off so every WRITE goes through the daemon: the poller reads requests into one area
 * it reuses for every batch (native-bindings/src/fuse_poller.c), and each WRITE's data
 * is handed to the thread pool after the batch that carried it. Every file must hold
 * exactly what its writer wrote (large writes of 1 MiB, and small ones packed several to
 * a batch), on the mount and in the upper layer after the unmount.
 */
import t from 'tap';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { tempDir } from '../lib/tmp';
import { mountStratafs } from '../lib/mounts';
import { run } from '../lib/proc';

const WRITERS = 4;
const SMALL_FILES = 50;

/** bytes that differ per writer and per position, so a write that lands another's data shows */
function pattern(writer: number, size: number): Buffer {
  const b = Buffer.alloc(size);
  for (let i = 0; i + 4 <= size; i += 4) b.writeUInt32LE(((writer + 1) * 0x01000193 + i) >>> 0, i);
  return b;
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

t.test('concurrent writers through the daemon each find their own bytes', async (t) => {
  const dir = await tempDir(t, 'concwrite');
  const [lower, upper, work, mnt, src] = ['lower', 'upper', 'work', 'mnt', 'src'].map((d) => path.join(dir, d));
  for (const d of [lower, upper, work, mnt, src]) fs.mkdirSync(d);
  fs.writeFileSync(path.join(lower, 'keep'), 'lower\n');
  const expected = new Map<string, string>();
  for (let w = 0; w < WRITERS; w++) {
    const big = pattern(w, 3 * 1024 * 1024 + 123);
    fs.writeFileSync(path.join(src, `big${w}`), big);
    expected.set(`big${w}`, sha(big));
    for (let i = 0; i < SMALL_FILES; i++) {
      const small = pattern(w * 1000 + i, 100 + i);
      fs.writeFileSync(path.join(src, `small${w}-${i}`), small);
      expected.set(`small${w}-${i}`, sha(small));
    }
  }
  const m = await mountStratafs({ lowers: [lower], upper, work, mnt, options: ['passthrough=off'] });
  t.teardown(() => m.unmount());
  // each writer copies its big file in 1 MiB writes, then its small files one write each
  const script = Array.from({ length: WRITERS }, (_, w) =>
    `( dd if="$1/big${w}" of="$2/big${w}" bs=1M status=none && ` +
    `for i in $(seq 0 ${SMALL_FILES - 1}); do cat "$1/small${w}-$i" > "$2/small${w}-$i" || exit 1; done ) &`,
  ).join('\n') + '\nfail=0; for j in $(jobs -p); do wait $j || fail=1; done; exit $fail';
  const r = await run('sh', ['-c', script, 'writers', src, mnt], { timeoutMs: 120_000 });
  t.equal(r.code, 0, `writers succeeded ${r.stderr}`);
  const hashes = await run('sh', ['-c', 'cd "$1" && sha256sum big* small*', 'sum', mnt], { timeoutMs: 60_000 });
  const seen = new Map(hashes.stdout.trim().split('\n').map((l) => { const [h, n] = l.split(/\s+/); return [n as string, h as string]; }));
  const wrong = [...expected].filter(([n, h]) => seen.get(n) !== h).map(([n]) => n);
  t.same(wrong, [], 'every file on the mount holds its writer\'s bytes');
  await m.unmount();
  const wrongUpper = [...expected].filter(([n, h]) => sha(fs.readFileSync(path.join(upper, n))) !== h).map(([n]) => n);
  t.same(wrongUpper, [], 'and so does the upper layer after the unmount');
});
