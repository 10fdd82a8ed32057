/**
 * O_DIRECT through the mount, as databases use it: dd with iflag=direct on a lower file,
 * an upper file and a file shorter than one block, oflag=direct into a new file and over
 * a lower file (copy-up), on the daemon data path (passthrough=off) and with passthrough;
 * kernel overlayfs over the same layers is the reference. With passthrough, a file held
 * open with O_DIRECT must not make the node's buffered opens direct (an unaligned read
 * of the same file still works).
 */
import t from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import { mountKernelOverlay } from '../lib/mounts';
import { run } from '../lib/proc';
import { forceUnmount, makeLayers, mountWith, py, type Layers } from './lib';

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

const BIG = randomBytes(1 << 20);
const SHORT = Buffer.from('short\n');
const UPPER = randomBytes(100_000);

/** the outputs of dd runs and reads through `mnt`, for comparison across targets */
async function exercise(t: tap.Test, l: Layers, what: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const mnt = l.mnt;
  // an upper file written the ordinary way first
  fs.writeFileSync(`${l.root}/upper.src`, UPPER);
  const w = await run('cp', [`${l.root}/upper.src`, `${mnt}/upper`]);
  t.equal(w.code, 0, `${what}: upper file written ${w.stderr}`);
  for (const [name, want] of [['big', BIG], ['short', SHORT], ['upper', UPPER]] as const) {
    for (const bs of ['4k', '1M']) {
      const r = await run('/bin/bash', ['-o', 'pipefail', '-c', `dd if="$1" iflag=direct bs=${bs} status=none | sha256sum`, 'sh', `${mnt}/${name}`]);
      t.equal(r.code, 0, `${what}: dd iflag=direct bs=${bs} of the ${name} file ${r.stderr}`);
      t.equal(r.stdout.split(' ')[0], sha(want), `${what}: it reads the ${name} file's content`);
      out[`read ${name} ${bs}`] = `${r.code} ${r.stdout.split(' ')[0]}`;
    }
  }
  for (const [name, conv] of [['new', ''], ['big', 'conv=notrunc']] as const) {
    const r = await run('/bin/bash', ['-o', 'pipefail', '-c', `head -c 262144 /dev/zero | tr '\\0' 'q' | dd of="$1" iflag=fullblock oflag=direct bs=64k ${conv} status=none`, 'sh', `${mnt}/${name}`]);
    t.equal(r.code, 0, `${what}: dd oflag=direct into the ${name} file ${r.stderr}`);
    const back = await run('/bin/bash', ['-o', 'pipefail', '-c', `dd if="$1" iflag=direct bs=64k status=none | sha256sum`, 'sh', `${mnt}/${name}`]);
    const want = name === 'new' ? Buffer.alloc(262144, 'q') : Buffer.concat([Buffer.alloc(262144, 'q'), BIG.subarray(262144)]);
    t.equal(back.stdout.split(' ')[0], sha(want), `${what}: and reads it back`);
    out[`write ${name}`] = `${r.code} ${back.stdout.split(' ')[0]}`;
  }
  // a buffered, unaligned read of a file another fd holds open with O_DIRECT
  const mixed = await py(
    `import os, sys
d = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECT)
f = os.open(sys.argv[1], os.O_RDONLY)
print(os.pread(f, 100, 3).hex())
os.close(f); os.close(d)`,
    [`${mnt}/short`],
  );
  t.equal(mixed.status, 0, `${what}: buffered read beside an O_DIRECT open ${mixed.stderr}`);
  t.equal(mixed.stdout.trim(), SHORT.subarray(3).toString('hex'), `${what}: it reads the data`);
  return out;
}

function layers(t: tap.Test): Layers {
  const l = makeLayers(t, 'odirect');
  fs.writeFileSync(`${l.lower}/big`, BIG);
  fs.writeFileSync(`${l.lower}/short`, SHORT);
  return l;
}

t.test('O_DIRECT reads and writes, stratafs and kernel overlayfs', async (t) => {
  const k = layers(t);
  const km = await mountKernelOverlay({ lowers: [k.lower], upper: k.upper, work: k.work, mnt: k.mnt });
  t.teardown(() => km.unmount());
  const kernel = await exercise(t, k, 'kernel overlayfs');
  await km.unmount();

  for (const [label, extra] of [['daemon data path (passthrough=off)', ',passthrough=off'], ['passthrough', '']] as const) {
    const l = layers(t);
    const m = await mountWith(l, {}, extra);
    t.equal(m.code, 0, m.stderr);
    if (m.code !== 0) continue;
    t.same(await exercise(t, l, label), kernel, `${label}: the same outcomes as kernel overlayfs`);
    forceUnmount(l.mnt);
    t.equal(sha(fs.readFileSync(`${l.upper}/new`)), sha(Buffer.alloc(262144, 'q')), `${label}: the O_DIRECT write is in the upper`);
  }
});
