/**
 * Malformed FUSE frames into the whole request path (decoder, session, dispatch, and a
 * real overlay on temporary layers; no mount, a fake device): random bodies for every
 * opcode, truncated frames and frames whose length field lies. Each one must end in
 * exactly one well-formed reply with its unique (an error or a result; none for FORGET
 * and BATCH_FORGET, none or EAGAIN for INTERRUPT, none for a frame too short to carry a
 * header), within a
 * few seconds, and never throw. Afterwards the session still serves valid requests.
 */
import t from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FuseSession } from '../../src/fuse/bridge';
import { InitFlag, Opcode, Size } from '../../src/fuse/wire/protocol';
import { Overlay } from '../../src/overlay';

const NO_REPLY = new Set<number>([Opcode.FORGET, Opcode.BATCH_FORGET]);
const FRAMES = Number(process.env.STRATAFS_FUZZ_FRAMES ?? 20000);
const SEED = Number(process.env.STRATAFS_SEED ?? Date.now() % 1_000_000);

interface Written {
  fd: number;
  buf: Buffer;
}

let unique = 1000n;
function frame(opcode: number, nodeId: bigint, body: Buffer, lenField?: number): Buffer {
  const h = Buffer.alloc(Size.IN_HEADER);
  h.writeUInt32LE(lenField ?? Size.IN_HEADER + body.length, 0);
  h.writeUInt32LE(opcode, 4);
  h.writeBigUInt64LE((unique += 2n), 8);
  h.writeBigUInt64LE(nodeId, 16);
  h.writeUInt32LE(0, 24);
  h.writeUInt32LE(0, 28);
  h.writeUInt32LE(4242, 32);
  return Buffer.concat([h, body]);
}

function initFrame(): Buffer {
  const flags = Object.values(InitFlag).reduce((a, b) => a | b, 0n) & ~InitFlag.INIT_RESERVED;
  const body = Buffer.alloc(64);
  body.writeUInt32LE(7, 0);
  body.writeUInt32LE(45, 4);
  body.writeUInt32LE(131072, 8);
  body.writeUInt32LE(Number(flags & 0xffffffffn), 12);
  body.writeUInt32LE(Number(flags >> 32n), 16);
  return frame(Opcode.INIT, 0n, body);
}

t.test(`${FRAMES} random and truncated frames: one reply each, no throw, no hang`, async (t) => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'stratafs-fuzz-'));
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  for (const d of ['lower', 'upper', 'work']) fs.mkdirSync(`${root}/${d}`);
  fs.mkdirSync(`${root}/lower/d`);
  fs.writeFileSync(`${root}/lower/a`, 'lower a');
  fs.writeFileSync(`${root}/lower/d/b`, 'lower b');
  fs.symlinkSync('a', `${root}/lower/l`);
  const overlay = await Overlay.open({
    lowerdirs: [`${root}/lower`], upperdir: `${root}/upper`, workdir: `${root}/work`,
    xattrPrefix: 'trusted.overlay.', volatile: true,
  });
  t.teardown(() => overlay.destroy());
  const written: Written[] = [];
  const session = new FuseSession({
    devFd: 3, fs: overlay, passthrough: 'off', isRoot: false, debug: () => undefined,
    transport: {
      writev: (fd, bufs) => {
        written.push({ fd, buf: Buffer.concat(bufs) });
        return 0;
      },
      close: () => undefined,
    },
  });
  await session.handleRequest(3, initFrame());
  t.equal(written.length, 1, 'INIT answered');
  t.equal(written[0].buf.readInt32LE(4), 0, 'INIT accepted');

  t.comment(`seed ${SEED} (STRATAFS_SEED replays, STRATAFS_FUZZ_FRAMES sets the count)`);
  let s = SEED >>> 0;
  const rnd = (n: number): number => {
    // mulberry32
    s = (s + 0x6d2b79f5) >>> 0;
    let z = Math.imul(s ^ (s >>> 15), s | 1);
    z ^= z + Math.imul(z ^ (z >>> 7), z | 61);
    return (((z ^ (z >>> 14)) >>> 0) % n);
  };
  const opcodes = Object.values(Opcode).filter((o) => o !== Opcode.INIT && o !== Opcode.DESTROY);
  const names = ['a\0', 'd\0', 'b\0', 'l\0', 'new\0', 'a\0new\0', 'd\0x\0', '..\0', '.\0', '\0', 'user.x\0', 'trusted.overlay.opaque\0'];
  const randomBody = (): Buffer => {
    const fixed = Buffer.alloc(rnd(3) === 0 ? rnd(200) : [0, 8, 16, 24, 40, 64, 80, 88][rnd(8)]);
    for (let i = 0; i < fixed.length; i++) fixed[i] = rnd(4) === 0 ? rnd(256) : 0;
    // small numbers in the first fields: plausible handles, sizes, offsets
    if (fixed.length >= 8 && rnd(2) === 0) fixed.writeUInt32LE(rnd(16), 0);
    const tail = rnd(2) === 0 ? Buffer.from(names[rnd(names.length)], 'latin1') : Buffer.alloc(0);
    return Buffer.concat([fixed, tail]);
  };
  const nodeIds = [0n, 1n, 2n, 3n, 4n, 5n, 6n, 0xffffffffffffffffn, 1n << 40n];

  let errors = 0;
  let successes = 0;
  let short = 0;
  for (let i = 0; i < FRAMES; i++) {
    const opcode = opcodes[rnd(opcodes.length)];
    let f = frame(opcode, nodeIds[rnd(nodeIds.length)], randomBody());
    const kind = rnd(10);
    if (kind === 0) f = f.subarray(0, rnd(f.length + 1)); // truncated, length field unchanged
    else if (kind === 1) f.writeUInt32LE(rnd(2) === 0 ? rnd(Size.IN_HEADER + 1) : f.length + 1 + rnd(4096), 0); // lying length
    const before = written.length;
    let timer: NodeJS.Timeout | undefined;
    const outcome = await Promise.race([
      session.handleRequest(3, f).then(() => 'done', (e: unknown) => `threw ${String(e)}`),
      new Promise<string>((r) => (timer = setTimeout(() => r('hang'), 5000))),
    ]);
    clearTimeout(timer);
    if (outcome !== 'done') {
      t.fail(`frame ${i} (opcode ${opcode}): ${outcome}: ${f.toString('hex')}`);
      return;
    }
    const replies = written.slice(before).filter((w) => w.buf.length >= Size.OUT_HEADER && w.buf.readBigUInt64LE(8) !== 0n);
    if (f.length < Size.IN_HEADER) {
      short++;
      if (replies.length !== 0) t.fail(`frame ${i}: ${f.length} bytes, no header, yet a reply`);
      continue;
    }
    const u = f.readBigUInt64LE(8);
    const want = NO_REPLY.has(opcode) ? 0 : 1;
    const mine = replies.filter((w) => w.buf.readBigUInt64LE(8) === u);
    const interruptOk = opcode === Opcode.INTERRUPT && mine.length <= 1;
    if ((mine.length !== want && !interruptOk) || replies.length !== mine.length) {
      t.fail(`frame ${i} (opcode ${opcode}): ${mine.length} replies, want ${want}: ${f.toString('hex')}`);
      return;
    }
    for (const w of mine) {
      const err = w.buf.readInt32LE(4);
      if (w.buf.readUInt32LE(0) !== w.buf.length || err > 0 || err < -4095 || (err < 0 && w.buf.length !== Size.OUT_HEADER)) {
        t.fail(`frame ${i} (opcode ${opcode}): malformed reply ${w.buf.toString('hex')}`);
        return;
      }
      if (err < 0) errors++;
      else successes++;
    }
  }
  t.pass(`${FRAMES} frames handled`);
  t.comment(`${errors} error replies, ${successes} successful, ${short} frames without a header`);
  t.ok(errors > FRAMES / 10, 'many frames refused with an error reply');
  t.ok(successes > 0, 'some random frames were valid requests and succeeded');
  t.ok(short > 0, 'some frames were cut inside the header');

  // still serving: LOOKUP of a known name
  const before = written.length;
  const ok = frame(Opcode.LOOKUP, 1n, Buffer.from('d\0', 'latin1'));
  await session.handleRequest(3, ok);
  const reply = written.slice(before).find((w) => w.buf.readBigUInt64LE(8) === ok.readBigUInt64LE(8));
  t.equal(reply?.buf.readInt32LE(4), 0, 'a valid LOOKUP after the fuzzing succeeds');
  const lowerFiles = fs.readdirSync(`${root}/lower`).sort();
  t.same(lowerFiles, ['a', 'd', 'l'], 'the lower layer is untouched');
});
