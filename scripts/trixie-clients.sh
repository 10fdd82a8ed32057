#!/usr/bin/env bash
# Fetches containerd 1.7 and Docker 26 (the `containerd`, `docker.io` and `docker-cli`
# packages of Debian trixie) and unpacks them into a private prefix, for the snapshotter
# tests and benchmark:
#   /var/cache/stratafs-tests/trixie-clients/root/usr/bin/{containerd,ctr,dockerd,docker,...}
#
# apt runs with a private configuration: its own sources.list (trixie, from the mirror
# the machine's own sources use), its own state and cache dirs. The machine's apt
# sources, lists and installed packages are never touched; nothing is installed, the
# .debs are only unpacked (dpkg-deb -x). Does nothing when the prefix is complete.
# Usage: trixie-clients.sh [PREFIX_DIR]      (prints the prefix on success)
set -euo pipefail

base=${1:-/var/cache/stratafs-tests/trixie-clients}
root="$base/root"
bins=(containerd ctr containerd-shim-runc-v2 dockerd docker)
complete=1
for b in "${bins[@]}"; do [ -x "$root/usr/bin/$b" ] || [ -x "$root/usr/sbin/$b" ] || complete=0; done
if [ "$complete" = 1 ]; then echo "$root"; exit 0; fi

for t in apt-get dpkg-deb; do
  command -v "$t" >/dev/null 2>&1 || { echo "stratafs: $t is needed to fetch the trixie clients" >&2; exit 1; }
done

# the mirror the machine's own apt uses (deb.debian.org when none is found)
mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
  grep -Eo '(https?://[^ ]+/debian)/?( |$)' | grep -v security | head -n1 | tr -d ' ' || true)
mirror=${mirror:-http://deb.debian.org/debian}
mirror=${mirror%/}

mkdir -p "$base"
apt="$base/apt"
rm -rf "$apt"
mkdir -p "$apt/state/lists/partial" "$apt/cache/archives/partial" "$apt/etc/preferences.d" "$apt/etc/apt.conf.d" "$apt/debs"
echo "deb $mirror trixie main" >"$apt/etc/sources.list"
: >"$apt/state/status"
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
opts=(
  -o "Dir::Etc::SourceList=$apt/etc/sources.list"
  -o "Dir::Etc::SourceParts=$apt/etc/sources.list.d"
  -o "Dir::Etc::Parts=$apt/etc/apt.conf.d"
  -o "Dir::Etc::PreferencesParts=$apt/etc/preferences.d"
  -o "Dir::State=$apt/state"
  -o "Dir::State::status=$apt/state/status"
  -o "Dir::Cache=$apt/cache"
  -o "APT::Sandbox::User=root"
  -o "Debug::NoLocking=1"
)
[ -f "$keyring" ] && opts+=(-o "Dir::Etc::Trusted=$keyring")
echo "stratafs: fetching containerd, docker.io and docker-cli from $mirror trixie" >&2
apt-get "${opts[@]}" update -qq >&2
(cd "$apt/debs" && apt-get "${opts[@]}" download containerd docker.io docker-cli >&2)

tmp="$base/root.new.$$"
rm -rf "$tmp"
mkdir -p "$tmp"
for deb in "$apt/debs"/*.deb; do dpkg-deb -x "$deb" "$tmp"; done
for b in "${bins[@]}"; do
  [ -x "$tmp/usr/bin/$b" ] || [ -x "$tmp/usr/sbin/$b" ] || { echo "stratafs: $b missing from the trixie packages" >&2; exit 1; }
done
rm -rf "$root"
mv "$tmp" "$root"
rm -rf "$apt"
echo "$root"
