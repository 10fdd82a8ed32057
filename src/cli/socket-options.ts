/**
 * The command-line options shared by `stratafs daemon` and `stratafs graphdriver` for the
 * limits of their socket (src/server/guarded-socket.ts).
 */
import { DEFAULT_LIMITS, positiveInt, uidOption, type SocketAccess, type SocketLimits } from '../server/guarded-socket';
import { usage } from './args';

export const LIMITS_USAGE = `  --max-connections N     connections open at once (default ${DEFAULT_LIMITS.maxConnections})
  --max-request-bytes N   size of one request (default ${DEFAULT_LIMITS.maxRequestBytes})
  --idle-timeout SECONDS  time to send a whole request (default ${DEFAULT_LIMITS.idleTimeoutMs / 1000})`;

/**
 * Reads `arg` into `access` or `limits` if it is a socket option (`--allow-uid` or a
 * limit, taking its value); false otherwise.
 */
export function socketOption(arg: string, value: () => string, access: SocketAccess, limits: Partial<SocketLimits>): boolean {
  switch (arg) {
    case '--allow-uid': access.allowUid = uidOption(value(), arg, usage); return true;
    case '--max-connections': limits.maxConnections = positiveInt(value(), arg, usage); return true;
    case '--max-request-bytes': limits.maxRequestBytes = positiveInt(value(), arg, usage); return true;
    case '--idle-timeout': limits.idleTimeoutMs = positiveInt(value(), arg, usage) * 1000; return true;
    default: return false;
  }
}
