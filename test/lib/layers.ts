// Layer directories for tests: the bundled example layers (fixtures/layers) and small
// layer trees described inline.
import { chmod, mkdir, symlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { REPO_ROOT } from './mounts';
import { runOk } from './proc';

export const FIXTURE_LAYERS_BUILDER = join(REPO_ROOT, 'fixtures', 'layers', 'build.sh');

export interface FixtureLayers {
  /** Lower directories, top first, ready for lowerdir=. */
  lowers: string[];
  base: string;
  mid: string;
  top: string;
}

/**
 * Build the example layers (fixtures/layers/README.md) into DEST. `topWhiteouts: 'aufs'`
 * writes the top layer's deletions as `.wh.` files instead of OverlayFS whiteouts.
 */
export async function buildFixtureLayers(dest: string, topWhiteouts: 'overlay' | 'aufs' = 'overlay'): Promise<FixtureLayers> {
  await runOk('sh', [FIXTURE_LAYERS_BUILDER, dest, `--top-whiteouts=${topWhiteouts}`], { timeoutMs: 60_000 });
  const [base, mid, top] = ['base', 'mid', 'top'].map((l) => join(dest, l));
  return { lowers: [top, mid, base], base, mid, top };
}

/** One entry of an inline layer: a file (string content), a directory, or a symlink. */
export type LayerEntry = string | { dir: true; mode?: number } | { symlink: string } | { data: string; mode: number };

/** A layer as { 'relative/path': entry }; parent directories are created as needed. */
export type LayerSpec = Record<string, LayerEntry>;

/** Create each layer of SPECS under ROOT/<name>; returns name -> absolute directory. */
export async function makeLayers(root: string, specs: Record<string, LayerSpec>): Promise<Record<string, string>> {
  const dirs: Record<string, string> = {};
  for (const [name, spec] of Object.entries(specs)) {
    const layer = join(root, name);
    await mkdir(layer, { recursive: true });
    for (const [rel, entry] of Object.entries(spec)) {
      const p = join(layer, rel);
      await mkdir(dirname(p), { recursive: true });
      if (typeof entry === 'string') {
        await writeFile(p, entry);
      } else if ('dir' in entry) {
        await mkdir(p, { recursive: true });
        if (entry.mode !== undefined) await chmod(p, entry.mode);
      } else if ('symlink' in entry) {
        await symlink(entry.symlink, p);
      } else {
        await writeFile(p, entry.data);
        await chmod(p, entry.mode);
      }
    }
    dirs[name] = layer;
  }
  return dirs;
}
