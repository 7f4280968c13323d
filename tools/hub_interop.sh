#!/usr/bin/env bash
# vitune and Python's huggingface_hub share one cache, both ways, against tools/hub_stand_in.py on 127.0.0.1:
# a model Python downloaded is used by `vitune info` offline with no request; a model `vitune pull` downloaded is
# found by hf_hub_download(local_files_only=True) and listed by scan_cache_dir without warnings.
# Needs: a built vitune (VITUNE, default target/debug/vitune) and a Python with huggingface_hub (PYTHON).
set -euo pipefail
cd "$(dirname "$0")/.."
VITUNE="${VITUNE:-target/debug/vitune}"
PYTHON="${PYTHON:-python3}"
PORT=18765
tmp="$(mktemp -d)"
"$PYTHON" tools/hub_stand_in.py tests/fixtures/timm_cls --port $PORT --seconds 60 & server=$!
trap 'kill $server 2>/dev/null; rm -rf "$tmp"' EXIT
sleep 1
export HF_ENDPOINT="http://127.0.0.1:$PORT"
echo "== Python downloads, vitune reads offline"
HF_HUB_CACHE="$tmp/a" "$PYTHON" -c "
from huggingface_hub import hf_hub_download
for f in ['config.json', 'model.safetensors']: hf_hub_download('timm/interop.test', f)"
HF_HUB_OFFLINE=1 HF_HUB_CACHE="$tmp/a" "$VITUNE" info hf-hub:timm/interop.test | grep -E '^(family|from)'
echo "== vitune pulls, Python reads offline"
HF_HUB_CACHE="$tmp/b" "$VITUNE" pull timm/interop.test
HF_HUB_OFFLINE=1 HF_HUB_CACHE="$tmp/b" "$PYTHON" -c "
from huggingface_hub import hf_hub_download, scan_cache_dir
for f in ['config.json', 'model.safetensors']: print(hf_hub_download('timm/interop.test', f, local_files_only=True))
info = scan_cache_dir('$tmp/b'); assert not info.warnings, info.warnings
print('scan_cache_dir:', [(r.repo_id, r.size_on_disk) for r in info.repos])"
echo "interop: both ways"
