#!/usr/bin/env bash
# The prepared device check, for a few minutes on a borrowed GPU machine: run from the repository root with the
# release binary built elsewhere and carried (target/release/vitune, or $VITUNE). It brings the Vulkan loader when
# the machine lacks one (from .gl/*.deb, see the device tool's README), then:
#   1. vitune selftest (the autotuner first: every kernel variant checked against a CPU reference on this GPU and
#      timed, the choices and rates printed; then correctness: forward vs timm, every method's gradients vs
#      autograd, the kernel variants vs a CPU reference; speed figures), and again with VITUNE_PRECISION=mixed
#      (the f16-input matmuls, cooperative matrices among them, checked and timed),
#   2. vitune bench forward / bench train --method vpt-deep for vit-b16 at batch 32 and for the demo config, and
#      the vit-b16 forward once more with the adapter type's rules (VITUNE_AUTOTUNE=off): the autotuner's gain,
#   3. tools/bench_torch.py on the same configs and GPU, where PyTorch and timm are installed.
# Each step has its own time limit and its own output file under $OUT (default gpu-check/); a failing step is
# recorded and the next one still runs. summary.txt lists each step's command and exit status.
set -uo pipefail
OUT=${OUT:-gpu-check}
BIN=${VITUNE:-target/release/vitune}
# The bench configs; `CONFIGS=demo SELFTEST=--quick tools/gpu_check.sh` is the small run that fits lavapipe.
CONFIGS=${CONFIGS:-vit-b16 demo}
SELFTEST=${SELFTEST:-}
mkdir -p "$OUT"
if ! ldconfig -p | grep -q libvulkan && ls .gl/*.deb >/dev/null 2>&1; then
  for f in .gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
NV_ICD=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -f "$NV_ICD" ] && [ -z "${VK_DRIVER_FILES:-}" ]; then export VK_DRIVER_FILES=$NV_ICD; fi
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/xdg-runtime}"
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"

step() { # step NAME SECONDS COMMAND...
  local name=$1 secs=$2
  shift 2
  local start=$SECONDS
  timeout "$secs" "$@" >"$OUT/$name.txt" 2>&1
  local rc=$?
  printf '%-22s rc=%-3s %4ss  %s\n' "$name" "$rc" "$((SECONDS - start))" "$*" | tee -a "$OUT/summary.txt"
}

: >"$OUT/summary.txt"
nvidia-smi -L >"$OUT/gpu.txt" 2>&1 || true
export VITUNE_CACHE_DIR="$OUT/cache" # a fresh tuning on this machine, its file kept with the results
step selftest 120 "$BIN" selftest $SELFTEST
step selftest_json 60 "$BIN" selftest --quick --json
# The f16-input matmuls (half; coop where the GPU offers 8x8x8 f16 -> f32 cooperative matrices) checked and timed.
step selftest_mixed 60 env VITUNE_PRECISION=mixed VITUNE_CACHE_DIR="$OUT/cache-mixed" "$BIN" selftest --quick
for cfg in $CONFIGS; do
  step "forward_$cfg" 90 "$BIN" bench forward --config "$cfg" --batch 32 --iters 3
  step "train_$cfg" 120 "$BIN" bench train --config "$cfg" --batch 32 --method vpt-deep --iters 3
done
case " $CONFIGS " in *" vit-b16 "*)
  step forward_rules 90 env VITUNE_AUTOTUNE=off "$BIN" bench forward --config vit-b16 --batch 32 --iters 3 ;;
esac
if python3 -c "import torch, timm" 2>/dev/null; then
  for cfg in $CONFIGS; do
    step "torch_$cfg" 120 python3 tools/bench_torch.py --config "$cfg" --batch 32 --method vpt-deep --iters 5
  done
else
  echo "PyTorch or timm missing: no PyTorch figures" | tee -a "$OUT/summary.txt"
fi
