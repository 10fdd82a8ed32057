/**
 * The root filesystem of `fresh-walk`: a Debian minbase rootfs (the tarball the container
 * tests make once per machine with debootstrap, test/lib/rootfs.ts) split into three
 * lowers as those tests split it: dpkg's and apt's state on top, etc/ and the docs in
 * the middle, the rest at the bottom (var/, var/lib/ and usr/ merge across layers).
 * Extracted once per tarball into the dataset cache and never written to.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { cachedBuild } from './cache';
import { describeFailure, ok, q, sh } from './proc';

/** Where the container tests keep their debootstrap tarball. */
export const DEFAULT_ROOTFS_TAR = path.join(process.env.STRATAFS_ROOTFS_CACHE ?? '/var/cache/stratafs-tests', 'debootstrap-bookworm-minbase.tar');

/** The cuts, top layer last; what is left becomes the bottom layer `base`. */
const CUTS: [string, string[]][] = [
  ['etc', ['etc', 'usr/share/doc']],
  ['state', ['var/lib/dpkg', 'var/lib/apt']],
];

function splitScript(tar: string, dir: string): string {
  const lines = ['set -e', `root=${q(path.join(dir, 'root'))}`, 'mkdir -p "$root"',
    `tar --numeric-owner --xattrs --xattrs-include='*' -xpf ${q(tar)} -C "$root"`];
  for (const [layer, paths] of CUTS) {
    const l = q(path.join(dir, layer));
    lines.push(`mkdir -p ${l}`);
    for (const p of paths) {
      lines.push(`if [ -e "$root"/${q(p)} ]; then mkdir -p ${l}/${q(path.dirname(p))} && mv "$root"/${q(p)} ${l}/${q(p)}; fi`);
    }
  }
  lines.push(`mv "$root" ${q(path.join(dir, 'base'))}`);
  return lines.join('\n');
}

/** The lowers (top first) of the split rootfs of TAR, built into the cache on first use; undefined when there is no TAR. */
export async function rootfsLayers(cache: string, tar: string, log: (s: string) => void): Promise<string[] | undefined> {
  let st: fs.Stats;
  try {
    st = fs.statSync(tar);
  } catch {
    return undefined;
  }
  const key = `rootfs-${path.basename(tar).replace(/[^\w.-]/g, '_')}-${st.size}-${Math.floor(st.mtimeMs)}`;
  const { dir } = await cachedBuild<{ tar: string }>(cache, key, async (d) => {
    const r = await sh(splitScript(tar, d));
    if (!ok(r)) throw new Error(describeFailure(`extract ${tar}`, r));
    return { tar };
  }, log);
  return [...CUTS.map(([layer]) => path.join(dir, layer)).reverse(), path.join(dir, 'base')];
}
