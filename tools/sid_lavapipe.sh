#!/usr/bin/env bash
# Runs a command under Debian sid's Mesa lavapipe (26.x): the CPU Vulkan driver that offers cooperative matrices
# (8x8x8, f16 in, f16 or f32 accumulate), so `matmul_coop` runs for real here, and runs vitune 2.5-3.4x faster than
# bookworm's 22.3. The sid root is made once by debootstrap (about a minute; root only):
#
#   tools/sid_lavapipe.sh setup
#   tools/sid_lavapipe.sh target/debug/vitune selftest --quick
#
# Binaries built on the host run inside. The repository, /tmp and the caller's environment and working directory
# are visible inside at the same paths. Mounts are made in a private mount namespace and vanish with the command.
set -euo pipefail
ROOT=${VITUNE_SID_ROOT:-/var/tmp/vitune-sid-root}
REPO=$(cd "$(dirname "$0")/.." && pwd)

if [ "${1:-}" = setup ]; then
  if [ -f "$ROOT/usr/share/vulkan/icd.d/lvp_icd.x86_64.json" ] || ls "$ROOT"/usr/share/vulkan/icd.d/lvp_icd*.json \
    >/dev/null 2>&1; then
    exit 0
  fi
  command -v debootstrap >/dev/null || { apt-get update -qq && apt-get install -y -qq debootstrap >/dev/null; }
  debootstrap --variant=minbase sid "$ROOT" http://deb.debian.org/debian >/dev/null
  # sid's Release files can be past their Valid-Until on a snapshot mirror.
  echo 'Acquire::Check-Valid-Until "false";' >"$ROOT/etc/apt/apt.conf.d/99no-check-valid-until"
  cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
  exec "$0" sh -c 'export DEBIAN_FRONTEND=noninteractive; apt-get update -qq &&
    apt-get install -y -qq --no-install-recommends mesa-vulkan-drivers libvulkan1 >/dev/null'
fi

[ $# -gt 0 ] || { echo "usage: $0 setup | $0 COMMAND [ARGS...]" >&2; exit 2; }
[ -x "$ROOT/bin/sh" ] || { echo "$0: no sid root at $ROOT: run '$0 setup' first" >&2; exit 2; }
if [ -z "${VITUNE_SID_NS:-}" ]; then
  export VITUNE_SID_NS=1
  exec unshare -m --propagation private -- "$0" "$@"
fi
unset VITUNE_SID_NS LD_LIBRARY_PATH LD_PRELOAD
# A build directory outside the repository (CARGO_TARGET_DIR) is visible too.
TARGET=""
case "${CARGO_TARGET_DIR:-}" in /*) TARGET=$CARGO_TARGET_DIR ;; esac
for d in /proc /sys /dev /tmp "$REPO" $TARGET; do
  mkdir -p "$ROOT$d"
  mountpoint -q "$ROOT$d" && continue
  case $d in
    /proc) mount -t proc proc "$ROOT/proc" ;;
    "$REPO" | "$TARGET") mount --bind "$d" "$ROOT$d" ;;
    *) mount --rbind "$d" "$ROOT$d" ;;
  esac
done
export PATH="$PATH:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
exec chroot "$ROOT" /bin/sh -c 'cd "$1" 2>/dev/null || cd /; shift; exec "$@"' sid "$PWD" "$@"
