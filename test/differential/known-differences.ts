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

export const KNOWN_DIFFERENCES: readonly KnownDifference[] = [];
