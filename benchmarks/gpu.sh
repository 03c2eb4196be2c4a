#!/usr/bin/env bash
# One GPU session in one call (about 8 minutes): on a CUDA machine with torch, onnx, onnxruntime,
# numpy, pillow, click, pytest and no network,
#   1. install this tree without an index and record the machine;
#   2. start two time-limited `srtrain fit` runs on the GPU (x4, T91 + BSD200 + General100,
#      validated on Set5): `large` from scratch, and `medium` continued from the bundled `fast`
#      (on 2026-11-26 that run continued the then-default `medium`, which is now `fast`);
#   3. meanwhile run the CUDA tests (pytest -m "cuda or trt");
#   4. after training, with the GPU to itself, srbench (torch fp32/bf16/fp16 on CUDA) of the
#      bundled default and the new large generator;
#   5. pack logs and run folders (generators, curves, configs; no optimizer state) into
#      OUTDIR/results.tar, refreshed after every stage so that a cut-off run still returns some.
#
#   bash benchmarks/gpu.sh OUTDIR [DATA_DIR]
#
# Through the device tool, the data travels as an ignored folder named in `carry` (here
# `.gpudata`: T91, BSD200, General100_partial50 HR as lossless WebP, 53 MB, to fit the 64 MiB
# transfer limit; Set5 HR + LR_bicubic X2/X4; site/png.py), never committed.
#
# DATA_DIR (default $SR_DATA_DIR or ../shared/data) holds the image sets; a `site/` folder in it,
# if present, goes on PYTHONPATH (pure-Python packages the machine lacks, e.g. pypng).
# TRAIN_MINUTES (default 6.5) is each run's --time-limit; ONLY_X2=1 trains one `large` x2 model
# instead (patch 96), with no tests or benchmarks; DEVICE (default cuda) allows a dry run on
# a CPU machine with tiny settings: DEVICE=cpu TRAIN_MINUTES=0.3 PRESET_A=tiny PRESET_B=tiny ...
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
