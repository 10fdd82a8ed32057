/**
 * What the podman tests (test/integration/containers/podman.test.ts and
 * rootless-podman.test.ts) run in a container over the busybox rootfs
 * (test/lib/rootfs.ts), and how they read `podman diff`.
 */

export const PODMAN_IMAGE = 'localhost/stratafs-test/busybox:1';
export const PODMAN_COMMITTED = 'localhost/stratafs-test/busybox:2';
/** `podman` arguments of every test run: no network, never pull */
export const PODMAN_RUN = ['run', '--network', 'none', '--pull', 'never'];

/**
 * The write script: writes and appends to lower files, deletes a lower file and a lower
 * dir, makes new dirs, then prints /data, /etc/motd, whether /etc/issue is gone and the
 * root's filesystem type. `replaceDir`: also replace the lower dir /data/sub by a new
 * one with a file `n` (an opaque dir) and list it too.
 */
export function podmanWriteScript(replaceDir: boolean): string {
  return [
    'echo new > /tmp/x',
    'echo more >> /etc/motd',
    'rm /etc/issue',
    'rm -r /data/gone',
    ...(replaceDir ? ['rm -r /data/sub && mkdir /data/sub && echo n > /data/sub/n'] : []),
    'mkdir -p /newdir/deep',
    'echo d > /newdir/deep/f',
    replaceDir ? 'ls /data /data/sub' : 'ls /data',
    'cat /etc/motd',
    'test -e /etc/issue || echo issue-gone',
    "grep ' / ' /proc/mounts | cut -d' ' -f3",
  ].join('; ');
}

/** Lines of `podman diff` as "K /path", sorted (podman prints them in no fixed order). */
export function diffLines(out: string): string[] {
  return out.split('\n').filter((l) => l.trim() !== '').sort();
}
