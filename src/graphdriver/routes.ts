/**
 * The graphdriver plugin protocol (Docker 20.10, "legacy" plugins over a unix socket):
 * one table, one entry per endpoint, each typed by its request and reply.
 *
 * - `json`: the body is a JSON object, the reply a JSON object;
 * - `tar-out`: JSON request, the reply is a raw tar stream (Diff);
 * - `tar-in`: parameters in the query string, the body is a raw tar (ApplyDiff).
 *
 * Every failure is answered as `{"Err": "..."}` (http.ts). Field checks here make a
 * request with a missing or mistyped field an error that names the field.
 */
import type { Readable } from 'node:stream';
import type { Driver } from './driver';
import { pluginError } from './store';

export interface InitRequest { Home: string; Opts?: string[] | null; UIDMaps?: unknown; GIDMaps?: unknown }
export interface CreateRequest { ID: string; Parent?: string; MountLabel?: string; StorageOpt?: Record<string, string> | null }
export interface IdRequest { ID: string }
export interface GetRequest { ID: string; MountLabel?: string }
export interface DiffRequest { ID: string; Parent?: string }

type Empty = Record<string, never>;

/**
 * A reply whose strings are byte strings (each char one byte): written as the bytes
 * themselves, so a name that is not UTF-8 reaches dockerd exactly as it is on disk (Go
 * keeps a string's bytes; a UTF-8 re-encoding would name another file).
 */
export class ByteJson {
  constructor(readonly body: object) {}
}

export type Route =
  | { kind: 'json'; handle: (body: Record<string, unknown>, driver: Driver) => Promise<object> | object }
  | { kind: 'tar-out'; handle: (body: Record<string, unknown>, driver: Driver) => Readable }
  | { kind: 'tar-in'; handle: (query: URLSearchParams, body: Readable, driver: Driver) => Promise<object> };

/** A JSON route whose body is checked into REQ and whose reply is REP. */
function json<REQ, REP extends object>(
  parse: (b: Record<string, unknown>) => REQ,
  run: (req: REQ, d: Driver) => Promise<REP> | REP,
): Route {
  return { kind: 'json', handle: (b, d) => run(parse(b), d) };
}

function str(b: Record<string, unknown>, field: string, required: true): string;
function str(b: Record<string, unknown>, field: string, required: false): string | undefined;
function str(b: Record<string, unknown>, field: string, required: boolean): string | undefined {
  const v = b[field];
  if (v === undefined || v === null || v === '') {
    if (required) throw pluginError(`request field ${field} is missing`);
    return undefined;
  }
  if (typeof v !== 'string') throw pluginError(`request field ${field} must be a string`);
  return v;
}

const idReq = (b: Record<string, unknown>): IdRequest => ({ ID: str(b, 'ID', true) });
const createReq = (b: Record<string, unknown>): CreateRequest => ({
  ID: str(b, 'ID', true),
  Parent: str(b, 'Parent', false),
  MountLabel: str(b, 'MountLabel', false),
});
const diffReq = (b: Record<string, unknown>): DiffRequest => ({ ID: str(b, 'ID', true), Parent: str(b, 'Parent', false) });
const none = (): Empty => ({});

export const ROUTES: Record<string, Route> = {
  '/Plugin.Activate': json(none, () => ({ Implements: ['GraphDriver'] })),
  '/GraphDriver.Init': json((b): InitRequest => ({ Home: str(b, 'Home', true) }), (r, d) => {
    d.init(r.Home);
    return {};
  }),
  // nested under "Capabilities": that is what dockerd decodes
  '/GraphDriver.Capabilities': json(none, () => ({ Capabilities: { ReproducesExactDiffs: false } })),
  '/GraphDriver.Create': json(createReq, async (r, d) => {
    await d.create(r.ID, r.Parent);
    return {};
  }),
  '/GraphDriver.CreateReadWrite': json(createReq, async (r, d) => {
    await d.create(r.ID, r.Parent);
    return {};
  }),
  '/GraphDriver.Remove': json(idReq, async (r, d) => {
    await d.remove(r.ID);
    return {};
  }),
  '/GraphDriver.Get': json((b): GetRequest => ({ ID: str(b, 'ID', true) }), async (r, d) => ({ Dir: await d.get(r.ID) })),
  '/GraphDriver.Put': json(idReq, async (r, d) => {
    await d.put(r.ID);
    return {};
  }),
  '/GraphDriver.Exists': json(idReq, (r, d) => ({ Exists: d.exists(r.ID) })),
  '/GraphDriver.Status': json(none, (_r, d) => ({ Status: d.status() })),
  '/GraphDriver.GetMetadata': json(idReq, (r, d) => ({ Metadata: d.metadata(r.ID) })),
  '/GraphDriver.Cleanup': json(none, async (_r, d) => {
    await d.cleanup();
    return {};
  }),
  '/GraphDriver.Diff': { kind: 'tar-out', handle: (b, d) => d.diff(diffReq(b).ID) },
  // paths are byte strings: the reply carries them as raw bytes (http.ts, ByteJson)
  '/GraphDriver.Changes': json(diffReq, async (r, d) => new ByteJson({ Changes: await d.changes(r.ID) })),
  '/GraphDriver.ApplyDiff': {
    kind: 'tar-in',
    handle: async (q, body, d) => {
      const id = q.get('id');
      if (!id) throw pluginError('ApplyDiff needs ?id=');
      return { Size: await d.applyDiff(id, body) };
    },
  },
  '/GraphDriver.DiffSize': json(diffReq, async (r, d) => ({ Size: await d.diffSize(r.ID) })),
};
