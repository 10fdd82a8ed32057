// Temporary directories for tests: mkdtemp under /tmp, removed recursively in teardown.
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { mountTable } from './mounts';
import { daemonsFor, run } from './proc';

/** The part of a tap Test these helpers use (keeps them independent of tap's types). */
export interface Teardown {
  teardown(fn: () => unknown): void;
}

/**
 * A fresh directory /tmp/stratafs-PREFIX-XXXXXX, removed when the test ends. tap runs
 * teardowns last-registered first, so mounts registered after this call are unmounted
 * before the directory goes. As a safety net the cleanup detaches (umount -l) anything
 * still mounted below the directory, and never removes files through a live mount.
 */
export async function tempDir(t: Teardown, prefix = 'test'): Promise<string> {
  const dir = await mkdtemp(join('/tmp', `stratafs-${prefix}-`));
  t.teardown(async () => {
    const below = [...(await mountTable()).keys()].filter((m) => m.startsWith(`${dir}/`));
    for (const m of below.sort().reverse()) await run('umount', ['-l', m], { timeoutMs: 20_000 });
    const still = [...(await mountTable()).keys()].filter((m) => m.startsWith(`${dir}/`));
    if (still.length > 0) throw new Error(`not removing ${dir}: still mounted: ${still.join(', ')}`);
    await rm(dir, { recursive: true, force: true });
  });
  return dir;
}

export interface ScratchLayers {
  dir: string;
  lower: string;
  upper: string;
  work: string;
  mnt: string;
  /** the -o value naming the three layer dirs */
  layerOption: string;
}

/**
 * A tempDir with empty lower, upper, work and mnt dirs for a mount made through the
 * launcher. Besides tempDir's detaching, the teardown ends (SIGKILL) any stratafs
 * daemon still serving mnt, so a failed test leaves no process behind.
 */
export async function scratchLayers(t: Teardown, prefix: string): Promise<ScratchLayers> {
  const dir = await tempDir(t, prefix);
  const [lower, upper, work, mnt] = ['lower', 'upper', 'work', 'mnt'].map((d) => join(dir, d)) as [string, string, string, string];
  for (const d of [lower, upper, work, mnt]) await mkdir(d);
  t.teardown(() => {
    for (const pid of daemonsFor(mnt)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
    }
  });
  return { dir, lower, upper, work, mnt, layerOption: `lowerdir=${lower},upperdir=${upper},workdir=${work}` };
}
