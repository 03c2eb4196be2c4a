# Two entry points for a fresh machine: `make demo` (main job: upscale an image with the bundled
# default model) and `make test` (test suite). Both create ./.venv.
# `make demo` installs only the runtime (numpy, Pillow, ONNX, OpenVINO: no torch). `make test`
# installs the development stack; torch is pinned to the 2.13.0 CPU wheel where one lies on local
# disk; elsewhere the same pin comes from PyPI. Override with TORCH_SPEC="torch==X".

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?= test,torch,onnx,openvino,serve,ray
# What the main job needs: the bundled model's ONNX copy in OpenVINO.
DEMO_EXTRAS ?= openvino
SPANDREL_SPEC ?= spandrel==0.4.2
# The runtime-only environment: no torch, proves that srrun deploys without it.
RT_VENV ?= .venv-runtime
RT_EXTRAS ?= onnx,openvino,serve
DEMO ?= demo-out
MACHINE ?= $(shell $(BIN)/python -m srgan_runtime.core.machine --slug 2>/dev/null || echo cpu)

.PHONY: demo demo-train test test-fast test-runtime lint bench install clean wheelhouse

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install "$(TORCH_SPEC)"
	$(BIN)/pip install -e ".[$(EXTRAS)]" "einops>=0.7"
	# spandrel (other projects' checkpoints) without its torchvision requirement, and last, so
	# that no later pip run reports it: PyPI's torchvision would replace the CPU torch with a
	# CUDA build of several GB, and the toolkit never calls it (srgan_runtime.core.foreign
	# stands in for its two imports).
	$(BIN)/pip install --no-deps "$(SPANDREL_SPEC)"
	touch $@

install: $(VENV)/.installed

$(VENV)/.demo-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -e ".[$(DEMO_EXTRAS)]"
	touch $@

demo: $(VENV)/.demo-installed
	$(BIN)/python -m srgan_runtime.core.synth $(DEMO) --count 1 --size 240x320 --seed 7
	$(BIN)/srrun upscale $(DEMO)/tex_000.png -o $(DEMO)/tex_000_x4.png --overwrite
	@echo "demo: $(DEMO)/tex_000.png upscaled x4 by the bundled default model -> $(DEMO)/tex_000_x4.png"

# The training side of the toolkit in a minute: train a tiny model on generated images,
# evaluate it against bicubic, upscale with it.
demo-train: install
	$(BIN)/srtrain synth $(DEMO)/train --count 24 --seed 1
	$(BIN)/srtrain synth $(DEMO)/val --count 4 --seed 2
	$(BIN)/srtrain fit --data $(DEMO)/train --val $(DEMO)/val --preset tiny --scale 4 \
		--steps 200 --batch-size 16 --patch-size 64 --val-every 100 --out $(DEMO)/run --overwrite
	$(BIN)/srtrain eval $(DEMO)/run --data $(DEMO)/val
	$(BIN)/srrun upscale $(DEMO)/val/tex_000.png -o $(DEMO)/val_x4.png --engine $(DEMO)/run --overwrite

lint: install
	$(BIN)/ruff check .

test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest tests --durations=25
	$(BIN)/python -m pytest benchmarks --benchmark-disable -q
	$(MAKE) test-runtime

# The inner loop: the tests that neither export, compile, spawn processes, start clusters nor
# drive a browser (marked automatically in tests/conftest.py): about two minutes here.
test-fast: install
	$(BIN)/python -m pytest tests -m "not slow" -q -x

$(RT_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(RT_VENV)
	$(RT_VENV)/bin/pip install -q -e ".[$(RT_EXTRAS)]" "pytest>=8"
	touch $@

# The torch-free test set in the runtime-only environment (fails if torch got in).
test-runtime: $(RT_VENV)/.installed
	@! $(RT_VENV)/bin/python -c "import torch" 2>/dev/null || \
		{ echo "test-runtime: torch is installed in $(RT_VENV)"; exit 1; }
	$(RT_VENV)/bin/python -m pytest tests/runtime/test_torch_free.py tests/core/test_modelinfo.py -m torchfree \
		-p no:cacheprovider
	@du -sm $(RT_VENV) $(VENV) | awk '{print "install size: " $$1 " MB " $$2}'

bench: install
	$(BIN)/python -m pytest benchmarks --benchmark-json benchmarks/results/bench-$(MACHINE).json
	$(BIN)/python benchmarks/tile_ratios.py --json benchmarks/results/tile_ratios-$(MACHINE).json

# Pure-Python wheels for benchmarks/gpu.sh on a machine without network.
wheelhouse: install
	$(BIN)/pip wheel -w .wheels safetensors tqdm pypng onnxscript

clean:
	rm -rf $(VENV) $(RT_VENV) $(DEMO) .pytest_cache .ruff_cache
