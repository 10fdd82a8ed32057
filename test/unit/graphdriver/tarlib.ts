// Building and reading tars in tests (through tar-stream, as the plugin does).
import { Readable } from 'node:stream';
import * as tar from 'tar-stream';

export type Member = Partial<tar.Header> & { name: string; pax?: Record<string, string>; data?: string | Buffer };

export async function makeTar(members: Member[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const done = (async () => {
    for await (const c of pack as AsyncIterable<Buffer>) chunks.push(c);
  })();
  for (const m of members) {
    const { data, ...header } = m;
    const body = data === undefined ? Buffer.alloc(0) : Buffer.from(data);
    await new Promise<void>((resolve, reject) => {
      pack.entry({ mtime: new Date(1_600_000_000_000), mode: 0o644, ...header, size: body.length }, body,
        (e) => (e ? reject(e) : resolve()));
    });
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

export const streamOf = (b: Buffer): Readable => Readable.from([b]);

export interface ReadMember {
  header: tar.Header & { pax?: Record<string, string> };
  data: Buffer;
}

export async function readTar(source: AsyncIterable<Buffer> | Readable): Promise<ReadMember[]> {
  const extract = tar.extract();
  const out: ReadMember[] = [];
  (source as Readable).pipe(extract as unknown as NodeJS.WritableStream);
  for await (const e of extract) {
    const parts: Buffer[] = [];
    for await (const c of e as AsyncIterable<Buffer>) parts.push(c);
    out.push({ header: e.header as ReadMember['header'], data: Buffer.concat(parts) });
  }
  return out;
}

// Raw tar blocks, built and read here byte by byte (independent of tar-stream and of
// src/graphdriver/pax.ts), for tests about exact bytes in PAX records.

export interface RawMember {
  /** typeflag character: '0' file, '2' symlink, '5' dir, 'x' PAX, 'g' global PAX */
  type: string;
  name: Buffer | string;
  linkname?: Buffer | string;
  body?: Buffer;
  mode?: number;
}

const field = (b: Buffer, off: number, width: number, n: number): void => {
  b.write(`${n.toString(8).padStart(width - 1, '0')}\0`, off, 'latin1');
};

export function rawHeader(m: RawMember): Buffer {
  const b = Buffer.alloc(512);
  Buffer.from(m.name).copy(b, 0, 0, 100);
  field(b, 100, 8, m.mode ?? 0o644);
  field(b, 108, 8, 0);
  field(b, 116, 8, 0);
  field(b, 124, 12, m.body?.length ?? 0);
  field(b, 136, 12, 1_600_000_000);
  b.fill(0x20, 148, 156);
  b.write(m.type, 156, 'latin1');
  if (m.linkname !== undefined) Buffer.from(m.linkname).copy(b, 157, 0, 100);
  b.write('ustar\x0000', 257, 'latin1');
  let sum = 0;
  for (const x of b) sum += x;
  b.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return b;
}

const pad = (n: number): Buffer => Buffer.alloc((512 - (n % 512)) % 512);

export function rawTar(members: RawMember[]): Buffer {
  const parts: Buffer[] = [];
  for (const m of members) {
    parts.push(rawHeader(m));
    if (m.body) parts.push(m.body, pad(m.body.length));
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

/** One PAX record `LEN KEY=VALUE\n` with the length counted in bytes. */
export function paxRecord(key: string | Buffer, value: Buffer | string): Buffer {
  const rest = Buffer.concat([Buffer.from(' '), Buffer.from(key), Buffer.from('='), Buffer.from(value), Buffer.from('\n')]);
  for (let digits = 1; ; digits++) {
    const len = rest.length + digits;
    if (String(len).length === digits) return Buffer.concat([Buffer.from(String(len)), rest]);
  }
}

export interface RawHeader {
  type: string;
  name: Buffer;
  linkname: Buffer;
  body: Buffer;
}

const cstr = (b: Buffer): Buffer => {
  const z = b.indexOf(0);
  return Buffer.from(z < 0 ? b : b.subarray(0, z));
};

/** Every header block of a tar (meta headers included), with its data. */
export function rawHeaders(tarball: Buffer): RawHeader[] {
  const out: RawHeader[] = [];
  for (let off = 0; off + 512 <= tarball.length;) {
    const h = tarball.subarray(off, off + 512);
    off += 512;
    if (h.every((x) => x === 0)) continue;
    const size = parseInt(h.toString('latin1', 124, 136).replace(/[\0 ]/g, '') || '0', 8);
    out.push({ type: String.fromCharCode(h[156]), name: cstr(h.subarray(0, 100)), linkname: cstr(h.subarray(157, 257)), body: Buffer.from(tarball.subarray(off, off + size)) });
    off += Math.ceil(size / 512) * 512;
  }
  return out;
}

/** PAX records of a body as key (latin1) -> raw value. */
export function paxRecords(body: Buffer): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  for (let off = 0; off < body.length;) {
    const sp = body.indexOf(0x20, off);
    const len = Number(body.toString('latin1', off, sp));
    const rec = body.subarray(sp + 1, off + len - 1);
    const eq = rec.indexOf(0x3d);
    out.set(rec.toString('latin1', 0, eq), Buffer.from(rec.subarray(eq + 1)));
    off += len;
  }
  return out;
}
