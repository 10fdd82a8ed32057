// Differences between kernel overlayfs and stratafs that are deliberate. Each entry says
// why. Keep this list empty unless a difference is a decision (write the decision down
// in the project's docs too); a bug is never a known difference.
import type { Where } from './compare';

export interface KnownDifference {
  /** Scenario names it applies to (undefined: every scenario, including the random run). */
  scenario?: RegExp;
  where: Where;
  /** Tree path (or "#INDEX op" text for outcomes) it applies to; undefined: any. */
  path?: RegExp;
  /** Snapshot field (type, mode, ..., or "outcome"/"exists"); undefined: any. */
  field?: string;
  reason: string;
}

export const KNOWN_DIFFERENCES: readonly KnownDifference[] = [
  {
    scenario: /^64-bit sizes and offsets/,
    where: 'outcome',
    path: /probe "int64-lseek-past-maxbytes"/,
    reason:
      'lseek SEEK_SET/SEEK_CUR/SEEK_END never reach a FUSE filesystem: the kernel answers them against the ' +
      "FUSE superblock's largest file size (2^63 - 1), where kernel overlayfs uses the upper filesystem's " +
      '(ext4: 16 TiB) and answers EINVAL past it. No FUSE reply can change that limit.',
  },
];
