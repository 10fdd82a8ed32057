/**
 * The command-line options shared by `stratafs daemon` and `stratafs graphdriver` for the
 * limits of their socket (src/server/guarded-socket.ts).
 */
import { StratafsError } from '../errors';
import { DEFAULT_LIMITS, positiveInt, uidOption as parseUid, type SocketLimits } from '../server/guarded-socket';

const usage = (msg: string): StratafsError => new StratafsError('STRATAFS_ERR_USAGE', msg);

export const LIMITS_USAGE = `  --max-connections N     connections open at once (default ${DEFAULT_LIMITS.maxConnections})
  --max-request-bytes N   size of one request (default ${DEFAULT_LIMITS.maxRequestBytes})
  --idle-timeout SECONDS  time to send a whole request (default ${DEFAULT_LIMITS.idleTimeoutMs / 1000})`;

/** Reads `arg` into `limits` if it is a limit option (taking its value); false otherwise. */
export function limitOption(arg: string, value: () => string, limits: Partial<SocketLimits>): boolean {
  switch (arg) {
    case '--max-connections': limits.maxConnections = positiveInt(value(), arg, usage); return true;
    case '--max-request-bytes': limits.maxRequestBytes = positiveInt(value(), arg, usage); return true;
    case '--idle-timeout': limits.idleTimeoutMs = positiveInt(value(), arg, usage) * 1000; return true;
    default: return false;
  }
}

export function uidOption(value: string, what: string, fail = usage): number {
  return parseUid(value, what, fail);
}
