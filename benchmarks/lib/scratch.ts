/**
 * This run's scratch directory (SCRATCH/run-XXXXXX): made at the start, removed at the
 * end unless --keep, never removed while anything below it is mounted. Mounts and
 * directories left by an earlier run that was killed are cleared first. Ctrl-C (or
 * SIGTERM) ends the running command and lets the run clean up.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { BenchOptions } from './options';
import { killRunning, mountsUnder, run } from './proc';

const OWNER = 'owner.pid';
const KEPT = 'kept';

let interrupted = false;

export const isInterrupted = (): boolean => interrupted;

/** Unmounts whatever is still mounted under DIR. */
export async function clearMounts(dir: string, log: (s: string) => void): Promise<void> {
  for (const m of mountsUnder(dir)) {
    log(`unmounting stale ${m.mountpoint} (${m.fstype})`);
    await run('umount', ['-l', m.mountpoint], { timeoutMs: 30_000 });
  }
}

/** Clears mounts left by earlier runs under PARENT whose program is no longer alive. */
async function clearStaleRuns(parent: string, log: (s: string) => void): Promise<void> {
  for (const name of fs.readdirSync(parent)) {
    if (!name.startsWith('run-')) continue;
    const dir = path.join(parent, name);
    try {
      process.kill(Number(fs.readFileSync(path.join(dir, OWNER), 'utf8')), 0);
      continue; // another benchmark is running there
    } catch {
      // no owner, or the owner is gone
    }
    await clearMounts(dir, log);
    // a run that was killed leaves its scratch behind; one kept on purpose stays
    if (!fs.existsSync(path.join(dir, KEPT)) && mountsUnder(dir).length === 0) {
      log(`removing ${dir} left by a run that did not finish`);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }
}

/** Runs FN with a fresh scratch directory and cleans up after it, however it ends. */
export async function withScratch<T>(o: BenchOptions, log: (s: string) => void, fn: (scratch: string) => Promise<T>): Promise<T> {
  fs.mkdirSync(o.scratch, { recursive: true });
  await clearStaleRuns(o.scratch, log);
  const scratch = fs.mkdtempSync(path.join(o.scratch, 'run-'));
  fs.writeFileSync(path.join(scratch, OWNER), String(process.pid));
  log(`scratch: ${scratch}`);
  const onSignal = (): void => {
    interrupted = true;
    log('interrupted: finishing the current step and cleaning up');
    killRunning();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    return await fn(scratch);
  } finally {
    await clearMounts(scratch, log);
    if (o.keep) {
      fs.writeFileSync(path.join(scratch, KEPT), '');
      log(`kept ${scratch}`);
    } else if (mountsUnder(scratch).length === 0) fs.rmSync(scratch, { recursive: true, force: true });
    else log(`not removing ${scratch}: something is still mounted below it`);
  }
}
