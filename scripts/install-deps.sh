#!/usr/bin/env bash
# Installs the Debian packages stratafs's demo and tests use, when they are missing:
# fuse3 (fusermount3), attr (setfattr/getfattr), acl (setfacl/getfacl) and
# busybox-static (the chroot test's root filesystem), fuse-overlayfs and fio (the
# benchmarks and their smoke test). Needs root and apt; does nothing
# when everything is there. Run by .ci/run and before `npm start` / `npm test`.
set -euo pipefail

need=()
command -v fusermount3 >/dev/null 2>&1 || need+=(fuse3)
command -v setfattr >/dev/null 2>&1 || need+=(attr)
command -v setfacl >/dev/null 2>&1 || need+=(acl)
[ -x /bin/busybox ] || need+=(busybox-static)
command -v fuse-overlayfs >/dev/null 2>&1 || need+=(fuse-overlayfs)
command -v fio >/dev/null 2>&1 || need+=(fio)
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "stratafs: missing packages: ${need[*]} (install them as root with apt-get)" >&2
  exit 1
fi
echo "stratafs: installing ${need[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
