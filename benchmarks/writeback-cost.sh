#!/bin/bash
# The cost of the writeback cache choice on the daemon data path (passthrough=off), side
# by side in one run: stratafs with writeback=off (the default) and writeback=on, and
# kernel overlayfs for scale. Each workload runs REPS times per target, targets rotated,
# each on a fresh upper; prints the median seconds per workload and target.
#
#   sudo benchmarks/writeback-cost.sh [REPS] [SCRATCH_PARENT]
#
# Workloads: 256 MiB written with dd bs=4k and with bs=1M (each ending with fsync),
# appending 100 bytes to 2000 small lower files, untar of /usr/include into a new
# directory, fio random 4 KiB reads and writes (psync) on a 64 MiB copied-up file.
set -euo pipefail
REPS=${1:-3}
PARENT=${2:-/var/tmp}
BIN=$(cd "$(dirname "$0")/.." && pwd)/bin/stratafs
S=$(mktemp -d "$PARENT/stratafs-wbcost-XXXXXX")
MNT=$S/mnt
mkdir -p "$S/lower/small" "$MNT"
cleanup() {
  mountpoint -q "$MNT" && { fusermount3 -u "$MNT" 2>/dev/null || umount -l "$MNT"; }
  rm -rf "$S"
}
trap cleanup EXIT
for i in $(seq 1 2000); do printf 'line %d\n' "$i" > "$S/lower/small/f$i"; done
head -c $((64 << 20)) /dev/urandom > "$S/lower/fio.bin"
tar -C /usr -cf "$S/include.tar" include

mount_target() {
  rm -rf "$S/upper" "$S/work" && mkdir "$S/upper" "$S/work"
  local layers="lowerdir=$S/lower,upperdir=$S/upper,workdir=$S/work"
  case $1 in
    kernel) mount -t overlay overlay -o "$layers" "$MNT" ;;
    wb-off) "$BIN" -o "$layers,passthrough=off,writeback=off" "$MNT" ;;
    wb-on) "$BIN" -o "$layers,passthrough=off,writeback=on" "$MNT" ;;
  esac
}
unmount_target() {
  if [ "$1" = kernel ]; then umount "$MNT"; else fusermount3 -u "$MNT"; fi
  # the daemon exits after the unmount; give it a moment
  sleep 0.3
}
workload() {
  case $1 in
    dd-4k) dd if=/dev/zero of="$MNT/dd" bs=4k count=65536 conv=fsync status=none ;;
    dd-1m) dd if=/dev/zero of="$MNT/dd" bs=1M count=256 conv=fsync status=none ;;
    append-small) for f in "$MNT"/small/f*; do printf '%0100d' 0 >> "$f"; done ;;
    untar) mkdir "$MNT/u" && tar -C "$MNT/u" -xf "$S/include.tar" ;;
    fio) fio --name=rw --filename="$MNT/fio.bin" --rw=randrw --rwmixread=50 --bs=4k --size=64m \
      --io_size=64m --ioengine=psync --fallocate=none --end_fsync=1 --output=/dev/null ;;
  esac
}
WORKLOADS="dd-4k dd-1m append-small untar fio"
TARGETS="wb-off wb-on kernel"
declare -A T
for w in $WORKLOADS; do
  for r in $(seq 1 "$REPS"); do
    # rotate the order of the targets from one repetition to the next
    set -- $TARGETS
    for k in $(seq 1 $(( (r - 1) % 3 ))); do set -- "$2" "$3" "$1"; done
    for tg in "$@"; do
      mount_target "$tg"
      sync; echo 3 > /proc/sys/vm/drop_caches
      start=$(date +%s.%N)
      workload "$w"
      end=$(date +%s.%N)
      unmount_target "$tg"
      T[$w.$tg]="${T[$w.$tg]:-} $(echo "$end - $start" | bc)"
    done
  done
done
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
printf '| workload | stratafs writeback=off | stratafs writeback=on | kernel overlayfs |\n|---|---|---|---|\n'
for w in $WORKLOADS; do
  printf '| %s |' "$w"
  for tg in $TARGETS; do printf ' %.2f |' "$(echo "${T[$w.$tg]}" | median)"; done
  printf '\n'
done
