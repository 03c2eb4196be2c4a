#!/usr/bin/env bash
# One GPU session in one call, on a CUDA machine with torch, triton, onnx, onnxruntime, numpy,
# pillow, click, pytest and no network. Default (at most about 9 minutes):
#   1. install this tree without an index and record the machine;
#   2. the CUDA tests (pytest -m "cuda or trt": parity of the bundled model tiled on the GPU,
#      the sub-pixel tail rewrite, compiled and AOTInductor paths, OOM recovery, training);
#   3. benchmarks/gpu_kernels.py: per-tile latency of eager fp32/fp16/bf16, torch.compile,
#      CUDA graphs, max-autotune and AOTInductor across tile {128,256,512} x batch {1,8,32},
#      CUDA events, parity against CPU fp32, % of the measured fp16 matmul rate (compiled rows
#      while KERNEL_BUDGET seconds last, default 240; the pytest and kernel stages are capped at
#      TEST_SECONDS=180 and KERNEL_SECONDS=360, to stay within a 600-second device call);
#   4. pack logs into OUTDIR/results.tar, refreshed after every stage.
# TRAIN=1 instead runs the training session of 2026-11-26 (two time-limited `srtrain fit` runs
# on T91 + BSD200 + General100 validated on Set5, the CUDA tests beside them, srbench after).
#
#   bash benchmarks/gpu.sh OUTDIR [DATA_DIR]
#
# Through the device tool, the data travels as an ignored folder named in `carry` (here
# `.gpudata`: T91, BSD200, General100_partial50 HR as lossless WebP, 53 MB, to fit the 64 MiB
# transfer limit; Set5 HR + LR_bicubic X2/X4; site/png.py), never committed. The default mode
# needs only Set5.
#
# DATA_DIR (default $SR_DATA_DIR or ../shared/data) holds the image sets; a `site/` folder in it,
# if present, goes on PYTHONPATH (pure-Python packages the machine lacks, e.g. pypng).
# TRAIN_MINUTES (default 6.5) is each training run's --time-limit; ONLY_X2=1 trains one `large`
# x2 model instead (patch 96); DEVICE (default cuda) allows a dry run on a CPU machine with tiny
# settings: DEVICE=cpu TILES=16 BATCHES=1 PATHS=eager-fp32 bash benchmarks/gpu.sh /tmp/out
set -uo pipefail
out=$(realpath -m "${1:?usage: bash benchmarks/gpu.sh OUTDIR [DATA_DIR]}")
data=$(realpath "${2:-${SR_DATA_DIR:-../shared/data}}")
minutes=${TRAIN_MINUTES:-6.5}
device=${DEVICE:-cuda}
workers=${WORKERS:-6}
batch=${BATCH:-32}
patch=${PATCH:-128}
mkdir -p "$out"
cd "$(dirname "$0")/.."
repo=$PWD
work=$(mktemp -d /tmp/gpu-session.XXXX)
runs=$work/runs
mkdir -p "$runs" "$work/logs"
log() { echo "[gpu.sh $(date +%H:%M:%S)] $*" | tee -a "$out/harness.log"; }
pack() { tar -C "$work" -cf "$out/results.tar.tmp" --exclude=checkpoints logs runs \
           && mv "$out/results.tar.tmp" "$out/results.tar"; }

log "machine"
nvidia-smi > "$work/logs/nvidia-smi.txt" 2>&1 || log "nvidia-smi failed"
python3 - > "$work/logs/versions.txt" 2>&1 <<'PY'
import importlib, os, sys
print(sys.version, "cpus", os.cpu_count())
for m in ("torch", "triton", "onnx", "onnxruntime", "numpy", "PIL", "click", "safetensors",
          "tqdm", "png", "onnxscript", "openvino", "tensorrt"):
    try:
        print(m, getattr(importlib.import_module(m), "__version__", "?"))
    except Exception as e:
        print(m, "MISSING", type(e).__name__)
import torch
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("cuda", torch.version.cuda, p.name, p.total_memory >> 20, "MiB", p.multi_processor_count, "SMs")
PY
cat "$work/logs/versions.txt" | tee -a "$out/harness.log"

log "install (no index) into $work/site"
python3 -m pip install --no-index --no-deps --no-build-isolation --target "$work/site" . \
  > "$work/logs/install.log" 2>&1 || log "install failed (see logs/install.log)"
export PYTHONPATH="$work/site:$data/site${PYTHONPATH:+:$PYTHONPATH}"
export PATH="$work/site/bin:$PATH" SR_DATA_DIR="$data" PYTHONUNBUFFERED=1
pack

if [ "${TRAIN:-}" != 1 ] && [ "${ONLY_X2:-}" != 1 ]; then
  log "CUDA tests"
  timeout "${TEST_SECONDS:-180}" python3 -m pytest -q -s -m "cuda or trt" tests \
    -p no:cacheprovider -rA > "$work/logs/pytest-cuda.txt" 2>&1
  log "pytest exit $? : $(tail -1 "$work/logs/pytest-cuda.txt")"
  pack
  log "kernels: eager, compiled, CUDA graphs, autotune, AOTInductor on $device"
  timeout "${KERNEL_SECONDS:-360}" python3 benchmarks/gpu_kernels.py "$work/logs/kernels" \
    --device "$device" --tiles "${TILES:-128,256,512}" --batches "${BATCHES:-1,8,32}" \
    ${PATHS:+--paths "$PATHS"} --budget-s "${KERNEL_BUDGET:-240}" \
    > "$work/logs/kernels.log" 2>&1
  log "gpu_kernels exit $?"
  rm -rf "$work/logs/kernels/packages" "$work/logs/kernels/inductor-cache"
  cp "$work/logs/kernels/gpu_kernels.json" "$work/logs/kernels/gpu_kernels.txt" "$out/" 2>/dev/null
  tail -3 "$work/logs/kernels.log" | tee -a "$out/harness.log"
  pack; log "done"; exit 0
fi

fit() {  # name, then srtrain fit options
  local name=$1; shift
  timeout -s INT $(python3 -c "print(int($minutes * 60 + 120))") \
    srtrain fit --data "$data/T91" --data "$data/BSD200" --data "$data/General100_partial50" \
      --val "$data/Set5" --steps 400000 --time-limit "$minutes" \
      --batch-size "$batch" --patch-size "$patch" --lr-schedule cosine --ema-decay 0.999 \
      --amp bf16 --device "$device" --workers "$workers" --val-every 2000 \
      --save-every 1000000 --log-every 50 --no-progress --out "$runs/$name" "$@" \
      > "$work/logs/train-$name.log" 2>&1
  echo "exit $?" >> "$work/logs/train-$name.log"
}
if [ "${ONLY_X2:-}" = 1 ]; then  # a second, shorter call: one x2 run alone on the GPU
  log "training x2: ${minutes} min, batch $batch, patch $patch, on $device"
  fit large-x2 --scale 2 --preset "${PRESET_A:-large}" --lr 3e-4 --warmup-steps 500 \
    --val-every 1000
  log "large-x2: $(grep -E '^(done|interrupted)|time limit|Error|error' "$work/logs/train-large-x2.log" | tail -3 | tr '\n' ' ')"
  cat "$runs/large-x2/val.csv" | tee -a "$out/harness.log"
  pack; log "done"; exit 0
fi
log "training: ${minutes} min each, batch $batch, patch $patch, on $device"
fit large-x4 --scale 4 --preset "${PRESET_A:-large}" --lr 3e-4 --warmup-steps 500 &
pid_a=$!
if [ -n "${PRESET_B:-}" ]; then
  fit medium-x4 --scale 4 --preset "$PRESET_B" --lr 2e-4 --warmup-steps 200 &
else
  fit medium-x4 --init fast --lr 2e-4 --warmup-steps 200 &
fi
pid_b=$!

log "CUDA tests (beside the training runs; they assert results, not times)"
timeout 300 python3 -m pytest -q -s -m "cuda or trt" tests -p no:cacheprovider -rA \
  > "$work/logs/pytest-cuda.txt" 2>&1
log "pytest exit $? : $(tail -1 "$work/logs/pytest-cuda.txt")"
pack

wait "$pid_a" "$pid_b"
for r in large-x4 medium-x4; do
  log "$r: $(grep -E '^(done|interrupted)|time limit|Error|error' "$work/logs/train-$r.log" | tail -3 | tr '\n' ' ')"
  [ -f "$runs/$r/val.csv" ] && tail -4 "$runs/$r/val.csv" | tee -a "$out/harness.log"
done
pack

log "srbench on $device (GPU to itself now)"
for m in default "$runs/large-x4/generator.safetensors"; do  # medium-x4 runs as default does
  name=$(basename "$(dirname "$m")"); [ "$m" = default ] && name=default
  [ "$m" = default ] || [ -f "$m" ] || continue
  timeout 90 srbench "$m" --device "$device" --backends torch --tile 128 --batch 8 \
    --repeats 5 --min-seconds 1 --json "$work/logs/srbench-$name.json" \
    > "$work/logs/srbench-$name.txt" 2>&1 || log "srbench $name exited $?"
  tail -6 "$work/logs/srbench-$name.txt" | tee -a "$out/harness.log"
done
pack
log "done"; ls -l "$out" | tee -a "$out/harness.log"
