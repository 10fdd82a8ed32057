#!/usr/bin/env bash
# Installs the Debian packages stratafs needs, when they are missing. Needs root and apt;
# does nothing when everything is there.
#   install-deps.sh core   what the demo needs (before `npm start`): fuse3 (fusermount3)
#                          and attr (setfattr, for the example layers)
#   install-deps.sh        everything the tests use (before `npm test`, in .ci/run): the
#                          core packages plus acl (setfacl/getfacl), busybox-static (the
#                          chroot test's rootfs),
#                          podman, buildah, runc, uidmap, debootstrap (the Debian rootfs
#                          of the dpkg test), docker.io, fuse-overlayfs and fio (the
#                          container tests, the benchmarks and their smoke test), strace
#                          (a test reads the addon's calls through it);
#                          then containerd 1.7 and Docker 26 from Debian trixie, unpacked
#                          into a private prefix (scripts/trixie-clients.sh) for the
#                          snapshotter tests.
set -euo pipefail

need=()
command -v fusermount3 >/dev/null 2>&1 || need+=(fuse3)
command -v setfattr >/dev/null 2>&1 || need+=(attr)
if [ "${1:-all}" != core ]; then
command -v setfacl >/dev/null 2>&1 || need+=(acl)
[ -x /bin/busybox ] || need+=(busybox-static)
command -v podman >/dev/null 2>&1 || need+=(podman)
command -v buildah >/dev/null 2>&1 || need+=(buildah)
command -v runc >/dev/null 2>&1 || need+=(runc)
command -v newuidmap >/dev/null 2>&1 || need+=(uidmap)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v fuse-overlayfs >/dev/null 2>&1 || need+=(fuse-overlayfs)
command -v fio >/dev/null 2>&1 || need+=(fio)
command -v strace >/dev/null 2>&1 || need+=(strace)
fi
trixie_clients() {
  if [ "${1:-all}" != core ] && [ "$(id -u)" -eq 0 ]; then
    bash "$(dirname "$0")/trixie-clients.sh" >/dev/null
  fi
}
if [ ${#need[@]} -eq 0 ]; then trixie_clients "${1:-all}"; exit 0; fi

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "stratafs: missing packages: ${need[*]} (install them as root with apt-get)" >&2
  exit 1
fi
echo "stratafs: installing ${need[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
trixie_clients "${1:-all}"
