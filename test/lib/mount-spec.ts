// The MountSpec of a mount served in the test process (MountServer): upper, work and
// mountpoint made under one directory, over the lowers given, with the defaults a
// `stratafs` mount without options gets.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { MountSpec } from '../../src/mount/spec';

export function servedSpec(dir: string, lowers: string | string[]): MountSpec {
  for (const d of ['upper', 'work', 'mnt']) fs.mkdirSync(path.join(dir, d), { recursive: true });
  return {
    lowerdirs: typeof lowers === 'string' ? [lowers] : lowers,
    upperdir: path.join(dir, 'upper'),
    workdir: path.join(dir, 'work'),
    mountpoint: path.join(dir, 'mnt'),
    readOnly: false,
    volatile: false,
    metacopy: false,
    timeout: 1,
    passthrough: 'auto',
    acl: true,
  };
}
