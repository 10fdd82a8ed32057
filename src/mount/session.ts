/**
 * The session of a detached mount daemon. bin/stratafs starts it in the caller's session,
 * without a setsid(1) exec in between (one exec, its libraries and locale files less per
 * mount); the daemon leaves that session itself before it mounts.
 */
import createDebug from 'debug';
import { isNativeError, native } from '../native';

const log = createDebug('stratafs:daemon');

/**
 * Makes this process the leader of a new session (setsid(2)): no terminal's SIGINT or
 * SIGHUP reaches it from then on. EPERM: it leads a process group already (started by
 * something other than bin/stratafs), and stays where it is.
 */
export function leaveSession(): void {
  try {
    native.setsid();
  } catch (e) {
    if (!isNativeError(e) || e.code !== 'EPERM') throw e;
    log("setsid: EPERM, staying in the caller's session");
  }
}
