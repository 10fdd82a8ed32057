/**
 * Fault injection at named points, for the crash tests (test/reliability).
 *
 * Off unless the daemon starts with `STRATAFS_FAULTS` set; then `fault` is a no-op
 * function and a call costs one empty call. The variable is a comma-separated list of
 * `POINT:ACTION[@N]`:
 *
 *   kill   the daemon SIGKILLs itself there (a crash at exactly that step)
 *   fail   the step fails with EIO (the operation must undo what it did so far)
 *   trace  the point's name is appended as a line to the file STRATAFS_FAULTS_TRACE
 *
 * `@N` fires on the Nth time the point is reached only (default: every time; `kill`
 * fires once anyway). Points, in the order an operation reaches them:
 *
 *   copyup.after-data     file data copied (and synced) into the work dir
 *   copyup.before-rename  copy complete with its metadata, not yet in the upper
 *   copyup.after-rename   the copy is in the upper
 *   create.before-install a new object (create, mkdir, mknod, symlink) built in the work dir
 *   link.before-rename    a link made in the work dir, to replace a whiteout
 *   unlink.before-exchange  a whiteout made in the work dir, about to replace an upper object
 *   unlink.after-exchange the replaced object sits in the work dir
 *   rename.after-mark     a directory marked (redirect/opaque), nothing moved yet
 *   rename.after-rename   the object is at its new name, bookkeeping pending
 *   sync                  an fsync/fdatasync is about to reach the disk (not with volatile)
 */
import { appendFileSync } from 'node:fs';
import { E, fail } from '../errors';

type Action = 'kill' | 'fail' | 'trace';

interface Rule {
  action: Action;
  /** fire on this hit only (1-based); 0 = every hit */
  at: number;
  hits: number;
}

/** Parses STRATAFS_FAULTS; a malformed entry is an error (a test must not silently miss its fault). */
export function parseFaults(spec: string): Map<string, Rule[]> {
  const rules = new Map<string, Rule[]>();
  for (const entry of spec.split(',').filter((s) => s.length > 0)) {
    const m = /^([a-z.-]+):(kill|fail|trace)(?:@(\d+))?$/.exec(entry);
    if (!m) throw new Error(`STRATAFS_FAULTS: bad entry "${entry}" (want point:kill|fail|trace[@N])`);
    const list = rules.get(m[1]) ?? [];
    list.push({ action: m[2] as Action, at: m[3] === undefined ? 0 : Number(m[3]), hits: 0 });
    rules.set(m[1], list);
  }
  return rules;
}

function injector(rules: Map<string, Rule[]>, traceFile: string | undefined): (point: string) => void {
  return (point) => {
    for (const r of rules.get(point) ?? []) {
      r.hits++;
      if (r.at !== 0 && r.hits !== r.at) continue;
      if (r.action === 'trace') {
        if (traceFile) appendFileSync(traceFile, `${point}\n`);
      } else if (r.action === 'kill') {
        process.kill(process.pid, 'SIGKILL');
      } else {
        fail(E.EIO, `injected fault at ${point}`);
      }
    }
  };
}

const spec = process.env.STRATAFS_FAULTS;

/** Reaching a named point (see header). */
export const fault: (point: string) => void = spec
  ? injector(parseFaults(spec), process.env.STRATAFS_FAULTS_TRACE)
  : () => undefined;
