/**
 * The `stratafs daemon --socket PATH` protocol: one JSON request per connection, one
 * line each way.
 *
 *   {"op":"mount","spec":{MountSpec}}      -> {"ok":true,"notice"?:"..."}
 *   {"op":"unmount","mountpoint":"/abs"}   -> {"ok":true}
 *   {"op":"list"}                          -> {"ok":true,"mounts":[MountSpec...]}
 *   {"op":"mount-argv","argv":[...],"cwd":"/abs"}
 *                                          -> {"ok":true,"notice"?:"..."}
 *   anything wrong                         -> {"ok":false,"error":"one line","usage"?:true}
 *
 * mount-argv carries a mount program's command line (`-o OPTIONS MOUNTPOINT`, as podman
 * passes it) with one byte per string character; see argv.ts. `usage` marks a wrong
 * command line (the client exits 2, as bin/stratafs does) as opposed to a failed mount.
 *
 * Whoever can connect can mount, so the socket is root's alone (guarded-socket.ts: mode
 * 0600 from the start, and the peer's credentials checked on every connection).
 */
import { StratafsError } from '../errors';
import { checkSpec, DEFAULT_TIMEOUT, type MountSpec } from '../mount/spec';
import type { VerdictReply } from '../mount/verdict';

export type Request =
  | { op: 'mount'; spec: MountSpec }
  | { op: 'unmount'; mountpoint: string }
  | { op: 'list' }
  | { op: 'mount-argv'; argv: string[]; cwd: string };

/** a mount's reply is its verdict (src/mount/verdict.ts); `list` adds the mounts */
export type Reply = (VerdictReply & { ok: false }) | { ok: true; notice?: string; mounts?: MountSpec[] };

const bad = (msg: string): StratafsError => new StratafsError('STRATAFS_ERR_SERVER', `bad request: ${msg}`);

const isPath = (v: unknown): v is string => typeof v === 'string';
const isAbs = (v: unknown): v is string => typeof v === 'string' && v.startsWith('/') && !v.includes('\0');

function ranges(v: unknown, field: string): MountSpec['uidMap'] {
  if (v === undefined) return undefined;
  if (!Array.isArray(v)) throw bad(`${field} must be a list`);
  return v.map((r: unknown) => {
    const o = r as Record<string, unknown>;
    if (![o?.inside, o?.host, o?.count].every((n) => Number.isInteger(n) && (n as number) >= 0)) throw bad(`${field} has a bad range`);
    return { inside: o.inside as number, host: o.host as number, count: o.count as number };
  });
}

function optUint(v: unknown, field: string): number | undefined {
  if (v === undefined) return undefined;
  if (!Number.isInteger(v) || (v as number) < 0) throw bad(`${field} must be a non-negative integer`);
  return v as number;
}

/**
 * A mount spec from another process: the JSON types field by field here, the rules of
 * every mount (src/mount/spec.ts) after that; fields left out take the command line's
 * defaults.
 */
export function parseSpec(v: unknown): MountSpec {
  if (typeof v !== 'object' || v === null) throw bad('spec must be an object');
  const s = v as Record<string, unknown>;
  if (!Array.isArray(s.lowerdirs) || !s.lowerdirs.every(isPath)) throw bad('lowerdirs must be a list of paths');
  if (!isPath(s.mountpoint)) throw bad('mountpoint must be a path');
  for (const f of ['upperdir', 'workdir'] as const) if (s[f] !== undefined && !isPath(s[f])) throw bad(`${f} must be a path`);
  if (s.timeout !== undefined && typeof s.timeout !== 'number') throw bad('timeout must be a number of seconds');
  if (s.passthrough !== undefined && typeof s.passthrough !== 'string') throw bad('passthrough must be auto or off');
  return checkSpec({
    lowerdirs: s.lowerdirs as string[],
    upperdir: s.upperdir as string | undefined,
    workdir: s.workdir as string | undefined,
    mountpoint: s.mountpoint,
    readOnly: s.readOnly === true,
    volatile: s.volatile === true,
    uidMap: ranges(s.uidMap, 'uidMap'),
    gidMap: ranges(s.gidMap, 'gidMap'),
    squashToUid: optUint(s.squashToUid, 'squashToUid'),
    squashToGid: optUint(s.squashToGid, 'squashToGid'),
    timeout: (s.timeout as number | undefined) ?? DEFAULT_TIMEOUT,
    passthrough: (s.passthrough ?? 'auto') as MountSpec['passthrough'],
    acl: s.acl !== false,
    metacopy: s.metacopy === true,
    redirectDir: s.redirectDir !== false,
    writeback: s.writeback as MountSpec['writeback'],
    uring: s.uring as MountSpec['uring'],
    affinity: s.affinity as MountSpec['affinity'],
    flags: s.flags as MountSpec['flags'],
  });
}

export function parseRequest(line: string): Request {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch (e) {
    throw bad(`malformed JSON: ${(e as Error).message}`);
  }
  const r = v as Record<string, unknown> | null;
  switch (r?.op) {
    case 'mount': return { op: 'mount', spec: parseSpec(r.spec) };
    case 'unmount':
      if (!isAbs(r.mountpoint)) throw bad('mountpoint must be an absolute path');
      return { op: 'unmount', mountpoint: r.mountpoint };
    case 'list': return { op: 'list' };
    case 'mount-argv':
      if (!Array.isArray(r.argv) || !r.argv.every((a) => typeof a === 'string')) throw bad('argv must be a list of strings');
      if (typeof r.cwd !== 'string') throw bad('cwd must be a string');
      return { op: 'mount-argv', argv: r.argv as string[], cwd: r.cwd };
    default: throw bad(`unknown op ${JSON.stringify(r?.op)}`);
  }
}
