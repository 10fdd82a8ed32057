import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { constants } from 'node:os';
import {
  decode, encodeAttr, encodeCreate, encodeData, encodeEntry, encodeError, encodeInit, encodeOpen, encodeStatfs,
  encodeInvalEntry, encodeInvalInode, encodeDelete, encodeLseek, encodeWrite, encodeXattrSize, xattrList,
  DirentWriter, direntSize, direntplusSize, encodeDev, decodeDev, splitTimeout, Opcode, Size,
  type Reply, type InitOut,
} from '../../src/fuse/wire';
import type { Attr, DirEntryOut, Entry } from '../../src/fuse/api';
import { writeI64, writeU64 } from '../../src/int64';

type Field = [string, string, number | string];
interface Frame {
  name: string;
  direction: 'request' | 'reply';
  fields: Field[];
  hex: string;
  expect?: Record<string, unknown>;
  setxattrExt?: boolean;
  encode?: string;
  input?: Record<string, unknown>;
}

const frames = JSON.parse(
  fs.readFileSync(path.join(__dirname, '..', '..', 'fixtures', 'fuse', 'frames.json'), 'utf8'),
) as Frame[];

/** an independent packer for the annotated fields */
function pack(fields: Field[]): Buffer {
  const parts: Buffer[] = [];
  for (const [, type, value] of fields) {
    const b = Buffer.alloc(type === 'u16' ? 2 : type === 'u32' || type === 'i32' ? 4 : 8);
    const num = (): bigint => BigInt(value);
    switch (type) {
      case 'u16': b.writeUInt16LE(Number(num())); break;
      case 'u32': b.writeUInt32LE(Number(num())); break;
      case 'i32': b.writeInt32LE(Number(num())); break;
      case 'u64': b.writeBigUInt64LE(num()); break;
      case 'i64': b.writeBigInt64LE(num()); break;
      case 'cstr': parts.push(Buffer.from(`${value as string}\0`, 'latin1')); continue;
      case 'str': parts.push(Buffer.from(value as string, 'latin1')); continue;
      case 'bytes': parts.push(Buffer.from(value as string, 'hex')); continue;
      default: throw new Error(`unknown field type ${type}`);
    }
    parts.push(b);
  }
  return Buffer.concat(parts);
}

const concat = (r: Reply): Buffer => Buffer.concat(r);

function attrOf(a: Record<string, unknown>): Attr {
  return { ...(a as unknown as Attr), ino: BigInt(a.ino as string) };
}
const NO_CACHE = { entry: 0, attr: 0 };

function entryOf(e: Record<string, unknown>): Entry {
  return { ...(e as unknown as Entry), attr: attrOf(e.attr as Record<string, unknown>) };
}

function encodeFixture(f: Frame): Reply {
  const i = f.input as Record<string, never>;
  switch (f.encode) {
    case 'error': return encodeError(BigInt(i.unique), constants.errno[i.errno as keyof typeof constants.errno]);
    case 'entry': {
      // the fixture's entry carries the timeouts the bridge passes alongside
      const e = i.entry as { entryTimeout: number; attrTimeout: number };
      return encodeEntry(BigInt(i.unique), entryOf(i.entry), { entry: e.entryTimeout, attr: e.attrTimeout });
    }
    case 'attr': return encodeAttr(BigInt(i.unique), attrOf(i.attr), i.timeout);
    case 'open': return encodeOpen(BigInt(i.unique), i.open);
    case 'init': {
      const init = i.init as Record<string, unknown>;
      return encodeInit(BigInt(i.unique), { ...(init as unknown as InitOut), flags: BigInt(init.flags as string) });
    }
    case 'readdir': {
      const w = new DirentWriter(BigInt(i.unique), i.size);
      for (const d of i.entries as Record<string, unknown>[]) w.add({ ...(d as unknown as DirEntryOut), ino: BigInt(d.ino as string) });
      return w.finish();
    }
    case 'statfs': return encodeStatfs(BigInt(i.unique), i.statfs);
    case 'invalEntry': return encodeInvalEntry(i.parent, i.name);
    case 'delete': return encodeDelete(i.parent, i.child, i.name);
    case 'invalInode': return encodeInvalInode(i.node, i.off, i.len);
    default: throw new Error(`no encoder ${f.encode}`);
  }
}

t.test('golden frames: annotation matches the bytes', async (t) => {
  t.ok(frames.length >= 15, 'fixtures loaded');
  for (const f of frames) t.equal(pack(f.fields).toString('hex'), f.hex, f.name);
});

t.test('golden requests decode field by field', async (t) => {
  for (const f of frames.filter((x) => x.direction === 'request')) {
    const buf = Buffer.from(f.hex, 'hex');
    const res = decode(buf, { setxattrExt: f.setxattrExt });
    if (!res.ok) {
      t.fail(`${f.name}: ${res.error.message}`);
      continue;
    }
    const h = res.req.header;
    const hdr = Object.fromEntries(f.fields.slice(0, 8).map(([n, , v]) => [n, v]));
    t.equal(h.len, buf.length, `${f.name}: len`);
    t.equal(h.opcode, hdr.opcode, `${f.name}: opcode`);
    t.equal(BigInt(h.unique), BigInt(hdr.unique), `${f.name}: unique`);
    t.equal(h.nodeId, hdr.nodeid, `${f.name}: nodeid`);
    t.same([h.uid, h.gid, h.pid], [hdr.uid, hdr.gid, hdr.pid], `${f.name}: caller`);
    const body = res.req.body as Record<string, unknown>;
    for (const [k, v] of Object.entries(f.expect ?? {})) {
      const got = body[k];
      if (Buffer.isBuffer(got)) t.equal(got.toString('hex'), v, `${f.name}: ${k}`);
      else if (typeof got === 'bigint') t.equal(got, BigInt(v as string), `${f.name}: ${k}`);
      else t.same(got, v, `${f.name}: ${k}`);
    }
  }
});

t.test('golden replies encode byte for byte', async (t) => {
  for (const f of frames.filter((x) => x.direction === 'reply')) {
    t.equal(concat(encodeFixture(f)).toString('hex'), f.hex, f.name);
  }
});

t.test('WRITE data is a view on the request buffer', async (t) => {
  const f = frames.find((x) => x.name.startsWith('WRITE'))!;
  const buf = Buffer.from(f.hex, 'hex');
  const res = decode(buf);
  if (!res.ok || res.req.body.kind !== 'WRITE') throw new Error('WRITE did not decode');
  t.equal(res.req.body.data.buffer, buf.buffer, 'same memory');
  buf[buf.length - 1] = 0x21;
  t.equal(res.req.body.data.toString('latin1'), 'hell!', 'no copy');
});

t.test('SETXATTR layout depends on SETXATTR_EXT', async (t) => {
  const f = frames.find((x) => x.setxattrExt)!;
  const res = decode(Buffer.from(f.hex, 'hex'), { setxattrExt: false });
  // read with the 8-byte layout, the name starts inside setxattr_flags: an empty name
  t.ok(!res.ok || (res.req.body.kind === 'SETXATTR' && res.req.body.name !== 'user.k'), 'layouts differ');
});

t.test('header fields beyond the body: extensions are cut off', async (t) => {
  const f = frames.find((x) => x.name.startsWith('LOOKUP "foo"'))!;
  const ext = Buffer.alloc(8, 0xff);
  const buf = Buffer.concat([Buffer.from(f.hex, 'hex'), ext]);
  buf.writeUInt32LE(buf.length, 0);
  buf.writeUInt16LE(1, 36); // total_extlen: 8 bytes
  const res = decode(buf);
  t.ok(res.ok && res.req.body.kind === 'LOOKUP' && res.req.body.name === 'foo');
});

t.test('malformed frames decode to errors', async (t) => {
  const short = decode(Buffer.alloc(10));
  t.notOk(short.ok, 'shorter than a header');
  t.equal(short.ok ? null : short.error.header, undefined, 'no header for a short frame');

  const f = frames.find((x) => x.name.startsWith('LOOKUP "foo"'))!;
  const good = Buffer.from(f.hex, 'hex');
  const lenMismatch = Buffer.from(good);
  lenMismatch.writeUInt32LE(good.length + 4, 0);
  const r1 = decode(lenMismatch);
  t.notOk(r1.ok, 'length field disagrees');
  t.equal(r1.ok ? 0 : r1.error.header?.unique, 4, 'unique still readable');

  const noNul = Buffer.from(good.subarray(0, good.length - 1));
  noNul.writeUInt32LE(noNul.length, 0);
  t.notOk(decode(noNul).ok, 'name without NUL');

  const write = frames.find((x) => x.name.startsWith('WRITE'))!;
  const cut = Buffer.from(write.hex, 'hex').subarray(0, Size.IN_HEADER + 40 + 2);
  const cutCopy = Buffer.from(cut);
  cutCopy.writeUInt32LE(cutCopy.length, 0);
  const r2 = decode(cutCopy);
  t.notOk(r2.ok, 'write data shorter than size');
  t.match(r2.ok ? '' : r2.error.message, /truncated/);

  const huge = Buffer.from(frames.find((x) => x.name.startsWith('BATCH_FORGET'))!.hex, 'hex');
  huge.writeUInt32LE(0xffffffff, Size.IN_HEADER);
  t.notOk(decode(huge).ok, 'forget count beyond the frame');
});

t.test('every truncation of every golden request is an error value, never a throw', async (t) => {
  let errors = 0;
  for (const f of frames.filter((x) => x.direction === 'request')) {
    const full = Buffer.from(f.hex, 'hex');
    for (let n = 0; n < full.length; n++) {
      const b = Buffer.from(full.subarray(0, n));
      if (n >= 4) b.writeUInt32LE(n, 0);
      let res;
      try {
        res = decode(b, { setxattrExt: f.setxattrExt });
      } catch (e) {
        t.fail(`${f.name} cut at ${n} threw ${String(e)}`);
        continue;
      }
      if (!res.ok) errors++;
      else if (n < Size.IN_HEADER) t.fail(`${f.name} cut at ${n} decoded`);
    }
  }
  t.ok(errors > 100, `${errors} truncated frames rejected`);
});

t.test('random frames never throw', async (t) => {
  let seed = 12345;
  const rnd = (): number => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed;
  };
  const opcodes = Object.values(Opcode);
  let decoded = 0;
  for (let i = 0; i < 5000; i++) {
    const len = Size.IN_HEADER + (rnd() % 200);
    const b = Buffer.alloc(len);
    for (let j = 0; j < len; j++) b[j] = rnd() & 0xff;
    b.writeUInt32LE(len, 0);
    b.writeUInt32LE(opcodes[rnd() % opcodes.length], 4);
    b.writeUInt16LE(0, 36);
    if (rnd() % 2) b.writeBigUInt64LE(BigInt(rnd()), 16);
    try {
      if (decode(b, { setxattrExt: rnd() % 2 === 0 }).ok) decoded++;
    } catch (e) {
      t.fail(`threw ${String(e)} on ${b.toString('hex')}`);
      return;
    }
  }
  // both outcomes must occur, or the generator is not reaching the decoder's checks
  t.ok(decoded > 0, `some of the 5000 random frames decoded (${decoded})`);
  t.ok(decoded < 5000, `some were rejected (${5000 - decoded})`);
});

t.test('unknown opcodes decode to unknown', async (t) => {
  const b = Buffer.alloc(Size.IN_HEADER);
  b.writeUInt32LE(Size.IN_HEADER, 0);
  b.writeUInt32LE(9999, 4);
  const r = decode(b);
  t.ok(r.ok && r.req.body.kind === 'unknown');
});

t.test('readdir size budget leaves what does not fit', async (t) => {
  const entries: DirEntryOut[] = ['a', 'bbbbbbbbbbbbbbbbbbbb', 'c'].map((name, i) => ({
    name, ino: BigInt(i + 10), type: 0o100000, nextOffset: i + 1,
  }));
  const budget = direntSize('a') + direntSize('bbbbbbbbbbbbbbbbbbbb') - 1;
  const w = new DirentWriter(5n, budget);
  let taken = 0;
  for (const e of entries) {
    if (!w.add(e)) break;
    taken++;
  }
  t.equal(taken, 1, 'second entry does not fit');
  const out = concat(w.finish());
  t.equal(out.length, Size.OUT_HEADER + direntSize('a'));
  t.equal(out.readUInt32LE(0), out.length, 'header length');
  t.equal(direntSize('abcd'), 32, '24 + 4 rounded to 8');
  t.equal(direntSize('abcdefgh'), 32, 'exactly aligned');
  t.equal(direntplusSize('a'), 128 + 32);

  const wp = new DirentWriter(6n, direntplusSize('.') + direntplusSize('x'));
  t.ok(wp.addPlus({ name: '.', ino: 1n, type: 0o40000, nextOffset: 1 }, null, NO_CACHE));
  t.notOk(wp.addPlus({ name: 'a-long-name-that-does-not-fit', ino: 2n, type: 0o100000, nextOffset: 2 }, null, NO_CACHE), 'too long for the rest');
  t.ok(wp.addPlus({ name: 'x', ino: 2n, type: 0o100000, nextOffset: 2 }, null, NO_CACHE), 'exactly fills the budget');
  t.notOk(wp.fits(1), 'full');
  const plus = concat(wp.finish());
  t.equal(plus.readBigUInt64LE(Size.OUT_HEADER), 0n, 'node id 0 for "."');
  t.equal(plus.readUInt32LE(Size.OUT_HEADER + 128 + 20), 4, 'DT_DIR');
});

t.test('small encoders', async (t) => {
  t.same(splitTimeout(1.25), [1, 250000000]);
  t.same(splitTimeout(0), [0, 0]);
  t.same(decodeDev(encodeDev(8, 1)), { major: 8, minor: 1 });
  t.same(decodeDev(encodeDev(259, 70000)), { major: 259, minor: 70000 });
  t.equal(encodeDev(1, 3), 0x103);
  const data = Buffer.from('payload');
  const r = encodeData(9n, data);
  t.equal(r.length, 2, 'header + data, for writev');
  t.equal(r[1], data, 'the data buffer itself, not a copy');
  t.equal(r[0].readUInt32LE(0), Size.OUT_HEADER + data.length);
  t.equal(concat(encodeXattrSize(1n, 77)).readUInt32LE(Size.OUT_HEADER), 77);
  t.equal(xattrList(['user.a', 'user.b']).toString('latin1'), 'user.a\0user.b\0');
  t.equal(concat(encodeLseek(1n, 8192)).readBigInt64LE(Size.OUT_HEADER), 8192n);
  t.equal(concat(encodeWrite(1n, 5)).readUInt32LE(Size.OUT_HEADER), 5);
  t.equal(concat(encodeError(1n, constants.errno.ENOSYS)).readInt32LE(4), -constants.errno.ENOSYS);
  const entry = frames.find((x) => x.encode === 'entry')!;
  const created = concat(encodeCreate(3n, entryOf((entry.input as Record<string, Record<string, unknown>>).entry),
    NO_CACHE, { fh: 4, openFlags: 2, backingId: 0 }));
  t.equal(created.length, Size.OUT_HEADER + Size.ENTRY_OUT + Size.OPEN_OUT);
  t.equal(created.readBigUInt64LE(Size.OUT_HEADER + Size.ENTRY_OUT), 4n, 'fh after entry_out');
});

t.test('64-bit reply fields are exact: numbers in two halves, negative times, bigints', async (t) => {
  const u = (v: number | bigint): bigint => { const b = Buffer.alloc(8); writeU64(b, v, 0); return b.readBigUInt64LE(0); };
  const i = (v: number | bigint): bigint => { const b = Buffer.alloc(8); writeI64(b, v, 0); return b.readBigInt64LE(0); };
  for (const v of [0, 1, 2 ** 32 - 1, 2 ** 32, 2 ** 32 + 1, 4096 * 2 ** 31 + 7, Number.MAX_SAFE_INTEGER]) {
    t.equal(u(v), BigInt(v), `u64 ${v}`);
    t.equal(i(v), BigInt(v), `s64 ${v}`);
    t.equal(i(-v), BigInt(-v), `s64 -${v}`);
  }
  t.equal(u(2n ** 64n - 1n), 2n ** 64n - 1n, 'a bigint u64 is written as is');
  t.equal(i(-(2n ** 63n)), -(2n ** 63n), 'a bigint s64 is written as is');
  t.throws(() => u(2 ** 60), 'a number past 2^53 is refused, not rounded');
  t.throws(() => i(-(2 ** 60)), 'a negative one too');
  t.throws(() => u(-1), 'a negative u64 is refused');
  t.throws(() => i(1.5), 'a fraction is refused');
  // an attr reply with every 64-bit field past 32 bits reads back the same
  const attr: Attr = {
    ino: 2n ** 60n + 3n, size: 2 ** 40 + 5, blocks: 2 ** 33 + 1, atimeSec: -(2 ** 33) - 1, atimeNsec: 1, mtimeSec: 2 ** 34, mtimeNsec: 2,
    ctimeSec: -1, ctimeNsec: 3, mode: 0o100644, nlink: 1, uid: 0, gid: 0, rdevMajor: 0, rdevMinor: 0, blksize: 4096,
  };
  const b = Buffer.concat(encodeAttr(9n, attr, 1)).subarray(Size.OUT_HEADER + 16);
  t.same([b.readBigUInt64LE(0), b.readBigUInt64LE(8), b.readBigUInt64LE(16), b.readBigInt64LE(24), b.readBigInt64LE(32), b.readBigInt64LE(40)],
    [attr.ino, BigInt(attr.size), BigInt(attr.blocks), BigInt(attr.atimeSec), BigInt(attr.mtimeSec), BigInt(attr.ctimeSec)]);
});

t.test('uniques: numbers below 2^53, exact bigints above, written back as read', async (t) => {
  for (const u of [2n, 0xfffffffen, (1n << 53n) - 2n, (1n << 53n) + 2n, (1n << 64n) - 2n]) {
    const f = Buffer.alloc(Size.IN_HEADER);
    f.writeUInt32LE(Size.IN_HEADER, 0);
    f.writeUInt32LE(Opcode.STATFS, 4);
    f.writeBigUInt64LE(u, 8);
    const r = decode(f);
    if (!r.ok) {
      t.fail(r.error.message);
      continue;
    }
    t.equal(typeof r.req.header.unique, u < 1n << 53n ? 'number' : 'bigint', `${u}: its type`);
    t.equal(Buffer.concat(encodeError(r.req.header.unique, 0)).readBigUInt64LE(8), u, `${u}: the reply carries it exactly`);
  }
});
