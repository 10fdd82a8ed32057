// Temporary directories for tests: mkdtemp under /tmp, removed recursively in teardown.
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { mountTable } from './mounts';
import { run } from './proc';

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
