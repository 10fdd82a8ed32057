#!/bin/bash
# Where the time of one FUSE round trip goes: the lookup-miss loop (a shell testing names
# that do not exist, one LOOKUP each) against stratafs and fuse-overlayfs mounted side by
# side, alternated, with the shell and every daemon thread measured from
# /proc/PID/task/*/schedstat: CPU time, and time spent runnable but waiting for a CPU.
# Their sum is about the wall time when shell and daemon share one CPU (`pinned`);
# unpinned, what is left over is time neither ran (a CPU waking up, the hand-over).
#
#   sudo benchmarks/roundtrip.sh [REPS] [MISSES] [SCRATCH_PARENT]
#
# Prints one line per run, then the medians, in ns per request: wall, daemon CPU,
# daemon waiting, shell CPU, shell waiting, context switches of the daemon per 100
# requests. Env STRATAFS_FLAGS: extra -o options for stratafs.
set -euo pipefail
REPS=${1:-5}
N=${2:-20000}
PARENT=${3:-/var/tmp}
BIN=$(cd "$(dirname "$0")/.." && pwd)/bin/stratafs
S=$(mktemp -d "$PARENT/stratafs-roundtrip-XXXXXX")
PIDS=()
cleanup() {
  for t in stratafs fuse-overlayfs; do
    mountpoint -q "$S/$t/mnt" 2>/dev/null && { fusermount3 -u "$S/$t/mnt" 2>/dev/null || umount -l "$S/$t/mnt"; }
  done
  rm -rf "$S"
}
trap cleanup EXIT

# mount_target NAME: mounts it at $S/NAME/mnt and prints its daemon's pid
mount_target() {
  local d=$S/$1
  mkdir -p "$d/lower/list" "$d/upper" "$d/work" "$d/mnt"
  local layers="lowerdir=$d/lower,upperdir=$d/upper,workdir=$d/work"
  if [ "$1" = stratafs ]; then
    "$BIN" -o "$layers${STRATAFS_FLAGS:+,$STRATAFS_FLAGS}" "$d/mnt"
  else
    fuse-overlayfs -o "$layers" "$d/mnt"
  fi
  # the daemon is the process holding the mount's /dev/fuse fd: the one whose argv names it
  local pid
  for _ in $(seq 50); do
    pid=$(pgrep -n -f -- "$d/mnt" || true)
    [ -n "$pid" ] && break
    sleep 0.1
  done
  [ -n "$pid" ] || { echo "no daemon found for $1" >&2; exit 1; }
  echo "$pid"
}

# sums over a pid's threads: "cpu_ns wait_ns switches"
daemon_stat() {
  local cpu=0 wait=0 sw=0 a b c t
  for t in /proc/"$1"/task/*; do
    read -r a b c < "$t/schedstat"
    cpu=$((cpu + a)); wait=$((wait + b))
    sw=$((sw + $(awk '/^(non)?voluntary_ctxt_switches/{s+=$2} END{print s}' "$t/status")))
  done
  echo "$cpu $wait $sw"
}

# the client loop; prints its own "cpu_ns wait_ns" (a builtin loop: one process)
cat > "$S/miss.sh" <<'EOF'
read -r a0 b0 _ < /proc/$$/schedstat
cd "$1" && i=0; while [ $i -lt "$3" ]; do [ -e "$2-$i" ]; i=$((i+1)); done
read -r a1 b1 _ < /proc/$$/schedstat
echo $((a1 - a0)) $((b1 - b0))
EOF

# one_run NAME PID PIN: prints "NAME PIN wall dcpu dwait scpu swait switches/100"
one_run() {
  local pre=() mask=$(( (1 << $(nproc)) - 1 ))
  if [ "$3" = pinned ]; then taskset -a -p 1 "$2" >/dev/null; pre=(taskset 1)
  else taskset -a -p "$(printf %x $mask)" "$2" >/dev/null; fi
  local c0 w0 s0 c1 w1 s1 t0 t1 sc sw
  read -r c0 w0 s0 < <(daemon_stat "$2")
  t0=$(date +%s%N)
  read -r sc sw < <("${pre[@]}" bash "$S/miss.sh" "$S/$1/mnt/list" "p$RANDOM$RANDOM" "$N")
  t1=$(date +%s%N)
  read -r c1 w1 s1 < <(daemon_stat "$2")
  echo "$1 $3 $(( (t1 - t0) / N )) $(( (c1 - c0) / N )) $(( (w1 - w0) / N )) $((sc / N)) $((sw / N)) $(( (s1 - s0) * 100 / N ))"
}

declare -A PID
for t in stratafs fuse-overlayfs; do PID[$t]=$(mount_target $t); done
# warm-up (JIT, caches), not counted
for t in stratafs fuse-overlayfs; do bash "$S/miss.sh" "$S/$t/mnt/list" warm "$N" >/dev/null; done
echo "target pin wall_ns daemon_cpu daemon_wait shell_cpu shell_wait switches/100req"
for _ in $(seq "$REPS"); do
  for pin in pinned unpinned; do
    for t in stratafs fuse-overlayfs; do one_run $t "${PID[$t]}" $pin; done
  done
done | tee "$S/runs"
echo "medians:"
for t in stratafs fuse-overlayfs; do
  for pin in pinned unpinned; do
    line="$t $pin"
    for col in 3 4 5 6 7 8; do
      line="$line $(awk -v t=$t -v p=$pin -v c=$col '$1==t && $2==p {print $c}' "$S/runs" | sort -n |
        awk '{v[NR]=$1} END{print v[int((NR+1)/2)]}')"
    done
    echo "$line"
  done
done
