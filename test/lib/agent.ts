// Typed client of test/differential/agent.mjs, which does all file work inside mounts in
// a child process (the test process never touches a mounted tree).
import { resolve } from 'node:path';
import { REPO_ROOT } from './mounts';
import { plainNode, runOk } from './proc';

export const AGENT = resolve(REPO_ROOT, 'test', 'differential', 'agent.mjs');
// Generous for 1000 ops on a slow FUSE mount, short enough that a hung mount fails a test
// well before tap's own per-file timeout.
const AGENT_TIMEOUT_MS = 120_000;

/** One filesystem operation; paths are relative to the mount root. Modes are octal strings. */
export type Op =
  | { op: 'create'; path: string; mode?: string; data?: string }
  | { op: 'overwrite'; path: string; data?: string }
  | { op: 'write'; path: string; offset: number; data: string }
  | { op: 'append'; path: string; data: string }
  | { op: 'truncate'; path: string; size: number }
  | { op: 'chmod'; path: string; mode: string }
  | { op: 'chown'; path: string; uid: number; gid: number }
  | { op: 'rename'; from: string; to: string }
  | { op: 'rename2'; from: string; to: string; flags: RenameFlag[] }
  | { op: 'open'; path: string; flags: OpenFlag[]; mode?: string; data?: string; offset?: number }
  | { op: 'mknod'; path: string; kind: 'fifo' | 'chr' | 'blk'; mode: string; major?: number; minor?: number }
  | { op: 'utimens'; path: string; atime: Time; mtime: Time; nofollow?: boolean }
  | { op: 'unlink'; path: string }
  | { op: 'rmdir'; path: string }
  | { op: 'mkdir'; path: string; mode?: string }
  | { op: 'link'; from: string; to: string }
  | { op: 'symlink'; target: string; path: string }
  | { op: 'readlink'; path: string }
  | { op: 'setxattr'; path: string; name: string; value: string }
  | { op: 'removexattr'; path: string; name: string }
  | { op: 'getxattr'; path: string; name: string }
  | { op: 'listxattr'; path: string }
  | { op: 'readdir'; path: string }
  | { op: 'read'; path: string }
  | { op: 'stat'; path: string }
  | { op: 'sameinode'; a: string; b: string }
  /** A multi-step probe of test/differential/probes.py; its JSON value is compared. */
  | { op: 'probe'; name: string; args?: Record<string, unknown> };

/** renameat2 flags: RENAME_NOREPLACE, RENAME_EXCHANGE, RENAME_WHITEOUT. */
export type RenameFlag = 'noreplace' | 'exchange' | 'whiteout';
export type OpenFlag = 'O_RDONLY' | 'O_WRONLY' | 'O_RDWR' | 'O_CREAT' | 'O_EXCL' | 'O_TRUNC' | 'O_APPEND' | 'O_NOFOLLOW' | 'O_DIRECTORY';
/** A utimensat time: [seconds, nanoseconds], or UTIME_OMIT. */
export type Time = [number, number] | 'omit';

export type Outcome = { ok: true; value?: unknown } | { err: string };

export interface SnapshotEntry {
  type: string;
  /** errno code when the walk could list the path but not lstat/read it. */
  error?: string;
  mode?: string;
  uid?: number;
  gid?: number;
  nlink?: number;
  size?: number;
  sha256?: string;
  target?: string;
  rdev?: string;
  /** "SEC.NSEC" for a time set on purpose (far from now), "recent" otherwise (snapshot.mjs). */
  mtime?: string;
  linkGroup?: string;
  xattrs?: Record<string, string>;
}

export interface Snapshot {
  kind: 'merged' | 'upper';
  entries: Record<string, SnapshotEntry>;
  /** Private overlay xattrs visible in a merged view (must be empty). */
  leaks: string[];
}

export async function agentRun(root: string, ops: readonly Op[]): Promise<Outcome[]> {
  const out = await runOk(...plainNode([AGENT, 'run', root]), { input: JSON.stringify(ops), timeoutMs: AGENT_TIMEOUT_MS });
  return JSON.parse(out) as Outcome[];
}

export async function agentSnapshot(root: string, kind: 'merged' | 'upper'): Promise<Snapshot> {
  const out = await runOk(...plainNode([AGENT, 'snapshot', root, kind]), { timeoutMs: AGENT_TIMEOUT_MS });
  return JSON.parse(out) as Snapshot;
}
