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
