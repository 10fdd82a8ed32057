/**
 * Errors.
 *
 * Inside the filesystem the only error is an errno: `FsError` carries one (a positive
 * value from os.constants.errno) and `toErrno` maps anything else to one, EIO when it
 * cannot tell. The bridge turns it into the reply's negative error field.
 *
 * At the edges (CLI, configuration, layers) errors a person reads are `StratafsError`
 * with a stable `code` (STRATAFS_ERR_*), printed as one line.
 */
import { constants } from 'node:os';

export const E = constants.errno;

export class FsError extends Error {
  readonly errno: number;
  constructor(errno: number, message?: string) {
    super(message ?? errnoName(errno));
    this.errno = errno;
  }
}

/** Throws FsError(errno). Handy in expressions: `node ?? fail(E.ENOENT)`. */
export function fail(errno: number, message?: string): never {
  throw new FsError(errno, message);
}

const byNumber = new Map<number, string>(Object.entries(E).map(([k, v]) => [v, k]));

export function errnoName(errno: number): string {
  return byNumber.get(errno) ?? `errno ${errno}`;
}

/**
 * Maps any thrown value to a positive errno: FsError and native errors carry one,
 * Node's fs errors carry a negative one plus a code; everything else is EIO.
 */
export function toErrno(e: unknown): number {
  if (e instanceof FsError) return e.errno;
  if (e && typeof e === 'object') {
    const { errno, code } = e as { errno?: unknown; code?: unknown };
    if (typeof errno === 'number' && errno !== 0) return Math.abs(errno);
    if (typeof code === 'string' && code in E) return E[code as keyof typeof E];
  }
  return E.EIO;
}

export type StratafsErrorCode =
  | 'STRATAFS_ERR_USAGE'
  | 'STRATAFS_ERR_OPTION'
  | 'STRATAFS_ERR_LAYER'
  | 'STRATAFS_ERR_MOUNTPOINT'
  | 'STRATAFS_ERR_XATTR'
  | 'STRATAFS_ERR_MOUNT'
  | 'STRATAFS_ERR_ADDON'
  | 'STRATAFS_ERR_PLUGIN'
  | 'STRATAFS_ERR_TAR'
  | 'STRATAFS_ERR_SERVER'
  // containerd snapshotter requests, one per gRPC status containerd tells apart
  | 'STRATAFS_ERR_SNAPSHOT_NOT_FOUND'
  | 'STRATAFS_ERR_SNAPSHOT_EXISTS'
  | 'STRATAFS_ERR_SNAPSHOT_STATE'
  | 'STRATAFS_ERR_SNAPSHOT_ARGUMENT';

export class StratafsError extends Error {
  readonly code: StratafsErrorCode;
  constructor(code: StratafsErrorCode, message: string) {
    super(message);
    this.code = code;
  }
}
