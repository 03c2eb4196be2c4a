#!/usr/bin/env bash
# GPU harness: on a CUDA machine that has torch, onnx, onnxruntime (CPU), numpy, pillow, click,
# pytest and pytest-benchmark but no network, install this working tree without downloads, run
# srbench and the GPU tests/benchmarks, and write JSON and logs to OUTDIR. Budget: < 6 minutes.
#
#   bash benchmarks/gpu.sh OUTDIR
#
# Pure-Python dependencies the machine may lack (safetensors, tqdm, pypng, onnxscript and its
# own) come from ./.wheels when present: `make wheelhouse` fills it on a machine with PyPI.
set -uo pipefail
out=${1:?usage: bash benchmarks/gpu.sh OUTDIR}
mkdir -p "$out"
cd "$(dirname "$0")/.."
log() { echo "[gpu.sh $(date +%H:%M:%S)] $*" | tee -a "$out/harness.log"; }

log "machine"; nvidia-smi > "$out/nvidia-smi.txt" 2>&1 || log "nvidia-smi failed"
python - > "$out/versions.txt" 2>&1 <<'PY'
import importlib, sys
print(sys.version)
for m in ("torch", "triton", "onnx", "onnxruntime", "numpy", "PIL", "click", "safetensors",
          "tqdm", "png", "onnxscript"):
    try:
        mod = importlib.import_module(m)
        print(m, getattr(mod, "__version__", "?"))
    except Exception as e:
        print(m, "MISSING", type(e).__name__)
import torch
print("cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
PY

log "install (no index)"
if [ -d .wheels ]; then
  python -m pip install --no-index --find-links .wheels safetensors tqdm pypng onnxscript \
    >> "$out/install.log" 2>&1 || log "wheelhouse install incomplete (see install.log)"
fi
python -m pip install --no-index --no-deps --no-build-isolation -e . >> "$out/install.log" 2>&1 \
  || log "editable install failed (see install.log); using PYTHONPATH"
export PYTHONPATH="$PWD:${PYTHONPATH:-}"

log "generator (srresnet x4, seeded weights)"
python - >> "$out/harness.log" 2>&1 <<'PY'
import torch
from srgan_train.archs import build_generator
from srgan_train.checkpoint import save_generator
from srgan_train.config import preset_config
torch.manual_seed(0)
save_generator(build_generator(preset_config("srresnet", 4)).eval(), "/tmp/srresnet.safetensors",
               preset="srresnet", step=0)
PY

log "srbench (cuda)"
timeout 180 python -m srgan_runtime.bench /tmp/srresnet.safetensors --device cuda --tile 128 \
  --batch 8 --json "$out/srbench-cuda.json" > "$out/srbench-cuda.txt" 2>&1 \
  || log "srbench exited $?"

log "GPU tests (cuda/trt markers)"
timeout 120 python -m pytest -q -m "cuda or trt" tests -p no:cacheprovider \
  > "$out/pytest-gpu.txt" 2>&1 || log "pytest exited $?"

log "done"; ls -l "$out" | tee -a "$out/harness.log"
