// Root filesystems for the container tests: a small busybox-static rootfs built in a
// few milliseconds, and a Debian bookworm minbase rootfs made by debootstrap once per
// machine and kept as a tarball (STRATAFS_ROOTFS_CACHE, default /var/cache/stratafs-tests),
// and the split of a rootfs into lower layers.
import { chmod, chown, copyFile, lstat, mkdir, rename, symlink, writeFile } from 'node:fs/promises';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { runOk } from './proc';

export const BUSYBOX = '/bin/busybox';
export const ROOTFS_CACHE = process.env.STRATAFS_ROOTFS_CACHE ?? '/var/cache/stratafs-tests';
export const DEBIAN_SUITE = 'bookworm';
/** The mirror debootstrap downloads from: STRATAFS_DEBIAN_MIRROR, else the machine's apt mirror. */
export const DEBIAN_MIRROR = process.env.STRATAFS_DEBIAN_MIRROR ?? aptMirror() ?? 'http://deb.debian.org/debian';

/** The first Debian archive (not the security one) in apt's sources, if any. */
function aptMirror(): string | undefined {
  const files = ['/etc/apt/sources.list.d/debian.sources', '/etc/apt/sources.list'];
  for (const file of files) {
    let text = '';
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    // deb822 ("URIs: URL") or one-line ("deb [opts] URL suite ...") entries
    for (const m of text.matchAll(/^(?:URIs:\s*|deb\s+(?:\[[^\]]*\]\s+)?)(https?:\/\/\S+)/gm)) {
      if (!m[1].includes('security')) return m[1].replace(/\/$/, '');
    }
  }
  return undefined;
}
/** debootstrap takes about a minute; downloads on a slow line may take longer. */
const DEBOOTSTRAP_TIMEOUT_MS = 15 * 60_000;

/**
 * A busybox rootfs in DEST: bin/busybox with a relative symlink per applet, etc/passwd,
 * etc/group, etc/issue, a sticky tmp, root's home, and data/ with a subdirectory (lower
 * files to delete or hide in the tests).
 */
export async function busyboxRootfs(dest: string): Promise<string> {
  await mkdir(join(dest, 'bin'), { recursive: true });
  await copyFile(BUSYBOX, join(dest, 'bin', 'busybox'));
  await chmod(join(dest, 'bin', 'busybox'), 0o755);
  const applets = (await runOk(BUSYBOX, ['--list'])).split('\n').filter((a) => a && a !== 'busybox');
  for (const applet of applets) await symlink('busybox', join(dest, 'bin', applet));
  const files: Record<string, string> = {
    'etc/passwd': 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n',
    'etc/group': 'root:x:0:\nnogroup:x:65534:\n',
    'etc/issue': 'busybox test rootfs\n',
    'etc/motd': 'lower motd\n',
    'data/keep': 'kept\n',
    'data/sub/a': 'a\n',
    'data/sub/b': 'b\n',
    'data/gone/c': 'c\n',
  };
  for (const [rel, content] of Object.entries(files)) {
    await mkdir(dirname(join(dest, rel)), { recursive: true });
    await writeFile(join(dest, rel), content);
  }
  await mkdir(join(dest, 'tmp'));
  await chmod(join(dest, 'tmp'), 0o1777);
  await mkdir(join(dest, 'root'), { mode: 0o700 });
  await mkdir(join(dest, 'srv', 'vol'), { recursive: true });
  return dest;
}

/** tar of DIR's contents (numeric owners, xattrs) at FILE. */
export async function tarDir(dir: string, file: string): Promise<string> {
  await runOk('tar', ['--numeric-owner', '--xattrs', "--xattrs-include=*", '-C', dir, '-cf', file, '.'], { timeoutMs: 300_000 });
  return file;
}

/** Extract FILE into DIR (created) with owners, modes and xattrs as stored. */
export async function untar(file: string, dir: string): Promise<string> {
  await mkdir(dir, { recursive: true });
  await runOk('tar', ['--numeric-owner', '--xattrs', "--xattrs-include=*", '-p', '-C', dir, '-xf', file], { timeoutMs: 300_000 });
  return dir;
}

// Built under a lock (flock) in a scratch dir next to the cache and renamed into place,
// so that concurrent test runs build once and never read half a tarball. debootstrap
// mounts /proc and /sys in the target while it works; a failed run may leave them.
const DEBOOTSTRAP_SCRIPT = `
set -eu
cache=$1 suite=$2 mirror=$3
out="$cache/debootstrap-$suite-minbase.tar"
[ -s "$out" ] && exit 0
build=$(mktemp -d "$cache/build-XXXXXX")
cleanup() {
  for m in $(awk -v d="$build/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r); do umount -l "$m" || true; done
  rm -rf "$build"
}
trap cleanup EXIT
echo "stratafs tests: debootstrap --variant=minbase $suite (once per machine, cached in $out)" >&2
debootstrap --variant=minbase "$suite" "$build/root" "$mirror" >"$build/log" 2>&1 || { tail -n 20 "$build/log" >&2; exit 1; }
rm -rf "$build/root/var/cache/apt/archives/"*.deb
tar --numeric-owner --xattrs --xattrs-include='*' -C "$build/root" -cf "$build/rootfs.tar" .
mv "$build/rootfs.tar" "$out"
`;

/** The cached debootstrap minbase tarball, built on first use (about a minute). */
export async function debootstrapTarball(): Promise<string> {
  const out = join(ROOTFS_CACHE, `debootstrap-${DEBIAN_SUITE}-minbase.tar`);
  if (existsSync(out)) return out;
  await mkdir(ROOTFS_CACHE, { recursive: true });
  await runOk('flock', [join(ROOTFS_CACHE, '.lock'), 'sh', '-c', DEBOOTSTRAP_SCRIPT, 'debootstrap', ROOTFS_CACHE, DEBIAN_SUITE, DEBIAN_MIRROR], {
    timeoutMs: DEBOOTSTRAP_TIMEOUT_MS,
  });
  return out;
}

/** A lower layer carved out of a rootfs: NAME and the paths moved into it. */
export interface LayerCut {
  name: string;
  paths: readonly string[];
}

/**
 * Split the rootfs in ROOT into lower layers under LAYERS: each cut's paths are moved
 * (renamed, so nothing is copied) into LAYERS/<name>, their parent directories recreated
 * with the same mode and owner; what is left becomes LAYERS/base. Returns the lower
 * dirs top first: the last cut is the top layer, base the bottom one.
 */
export async function splitRootfs(root: string, layers: string, cuts: readonly LayerCut[]): Promise<string[]> {
  const dirs: string[] = [];
  for (const cut of cuts) {
    const layer = join(layers, cut.name);
    await mkdir(layer, { recursive: true });
    await copyOwnerMode(root, layer);
    for (const rel of cut.paths) {
      const parts = rel.split('/');
      for (let i = 1; i < parts.length; i++) {
        const sub = parts.slice(0, i).join('/');
        if (!existsSync(join(layer, sub))) {
          await mkdir(join(layer, sub));
          await copyOwnerMode(join(root, sub), join(layer, sub));
        }
      }
      await rename(join(root, rel), join(layer, rel));
    }
    dirs.unshift(layer);
  }
  const base = join(layers, 'base');
  await rename(root, base);
  dirs.push(base);
  return dirs;
}

async function copyOwnerMode(from: string, to: string): Promise<void> {
  const st = await lstat(from);
  await chown(to, st.uid, st.gid);
  await chmod(to, st.mode & 0o7777);
}

/** The busybox rootfs split into two lowers: bin/ on top of the rest. */
export async function busyboxLayers(dir: string): Promise<string[]> {
  const root = await busyboxRootfs(join(dir, 'rootfs'));
  return splitRootfs(root, dir, [{ name: 'bin', paths: ['bin'] }]);
}

/**
 * The debootstrap rootfs extracted under DIR and split into three lowers: dpkg's and
 * apt's state on top, etc/ and the docs in the middle, the rest (usr/, the bulk) at the
 * bottom; var/, var/lib/ and usr/ merge across layers.
 */
export async function debootstrapLayers(dir: string): Promise<string[]> {
  const root = await untar(await debootstrapTarball(), join(dir, 'rootfs'));
  return splitRootfs(root, dir, [
    { name: 'etc', paths: ['etc', 'usr/share/doc'] },
    { name: 'state', paths: ['var/lib/dpkg', 'var/lib/apt'] },
  ]);
}
