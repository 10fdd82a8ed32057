// FUSE over io_uring in tests: the fuse module's enable_uring switch (set for a test and
// put back in its teardown) and the kernel's own count of a daemon's ring completions.
import { existsSync } from 'node:fs';
import { readdir, readFile, readlink, writeFile } from 'node:fs/promises';
import type { Teardown } from './tmp';

/** present only when the kernel was built with CONFIG_FUSE_IO_URING */
export const ENABLE_URING = '/sys/module/fuse/parameters/enable_uring';

/** why a test that needs the ring cannot run here, or undefined */
export function uringUnavailable(): string | undefined {
  if (!existsSync(ENABLE_URING)) return `the kernel lacks CONFIG_FUSE_IO_URING (no ${ENABLE_URING})`;
  if (process.getuid?.() !== 0) return `setting ${ENABLE_URING} needs root`;
  return undefined;
}

/** Sets enable_uring to `on` for this test; the previous value is put back in teardown. */
export async function setEnableUring(t: Teardown, on: boolean): Promise<void> {
  const previous = (await readFile(ENABLE_URING, 'utf8')).trim();
  t.teardown(() => writeFile(ENABLE_URING, previous));
  await writeFile(ENABLE_URING, on ? 'Y' : 'N');
}

/**
 * For every process whose command line names `mnt` (the daemon serving it): the CqHead
 * of each of its io_uring fds, read from /proc/PID/fdinfo — completions the daemon has
 * consumed, i.e. requests that came through a ring (registration completes nothing).
 * An empty list: no such process has an io_uring.
 */
export async function ringCompletions(mnt: string): Promise<number[]> {
  const out: number[] = [];
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (!cmdline.split('\0').includes(mnt)) continue;
    const fds = await readdir(`/proc/${pid}/fd`).catch(() => [] as string[]);
    for (const fd of fds) {
      const link = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '');
      if (link !== 'anon_inode:[io_uring]') continue;
      const info = await readFile(`/proc/${pid}/fdinfo/${fd}`, 'utf8').catch(() => '');
      const m = /^CqHead:\s*(\d+)/m.exec(info);
      if (m) out.push(Number(m[1]));
    }
  }
  return out;
}
