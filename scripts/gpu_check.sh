#!/usr/bin/env bash
# GPU check for the deployment work (issue 7): one call, < 8 minutes on one H100/H200.
#
# Prints a short table: torch fp32 / bf16 / fp16 / compiled latency of the vit_b and
# vit_h presets at S=1024 (random weights, batch 1), end-to-end pairs/s of Segmenter on a
# 480x640 pair (goals: vit_h >= 20, vit_b >= 60), and the TensorRT path when TensorRT
# is importable there. Figures also go to $OUT/gpu_check.json when OUT is set.
#
#   bash scripts/gpu_check.sh --fetch-wheels   # here, with network: wheels the GPU image lacks
#   bash scripts/gpu_check.sh                  # on the GPU machine (carry build/gpu_wheels)
#   PYTHON=.venv/bin/python bash scripts/gpu_check.sh --dry-run   # CPU rehearsal, tiny preset
#
# With the device tool: run(command="bash scripts/gpu_check.sh", carry=["build/gpu_wheels"],
# timeout_s=540). The GPU image has torch, torchvision, opencv, onnx, onnxruntime and
# pyyaml but not segment_anything (pure Python, 37 kB): that wheel travels in
# build/gpu_wheels (git-ignored via build/). Extra arguments go to scripts/gpu_check.py.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=build/gpu_wheels
PY=${PYTHON:-python3}

if [[ "${1:-}" == "--fetch-wheels" ]]; then
    mkdir -p "$WHEELS"
    "$PY" -m pip download --no-deps --only-binary=:all: -d "$WHEELS" segment-anything==1.0
    ls -la "$WHEELS"
    exit 0
fi

export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
if ! "$PY" -c "import segment_anything" 2>/dev/null; then
    if ! compgen -G "$WHEELS/*.whl" >/dev/null; then
        echo "gpu_check: segment_anything is missing and $WHEELS has no wheels;" \
             "run 'bash scripts/gpu_check.sh --fetch-wheels' where pip reaches PyPI and carry $WHEELS" >&2
        exit 3
    fi
    SITE=$(mktemp -d /tmp/fusionsam_site.XXXX)
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" "$WHEELS"/*.whl
    export PYTHONPATH="$PYTHONPATH:$SITE"
fi
"$PY" - <<'EOF'
import importlib.util, torch
mods = ["segment_anything", "cv2", "onnx", "onnxruntime", "onnxscript", "tensorrt"]
have = {m: importlib.util.find_spec(m) is not None for m in mods}
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA GPU"
print(f"gpu_check: python modules {have}; {gpu}")
EOF
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm \
    --format=csv,noheader || true
exec "$PY" -u scripts/gpu_check.py "$@"
