"""The memory budget: sizes, the measured per-tile footprint, the tile chosen to fit, a refusal
when nothing fits, and a whole srrun process kept under an explicit --max-memory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from srgan_runtime import Upscaler
from srgan_runtime.core.errors import UserError
from srgan_runtime.memory import (
    Footprint,
    current_rss,
    footprint,
    measure_footprint,
    measure_here,
    parse_size,
    reset_peak_rss,
)

# Test plumbing kept out of the runtime: runs a module and writes its own peak RSS at exit.
REPORT_PEAK = Path(__file__).resolve().parents[2] / "benchmarks" / "report_peak.py"


linux_only = pytest.mark.skipif(not Path("/proc/self/clear_refs").exists() or
                                not reset_peak_rss(),
                                reason="peak RSS cannot be reset here (Linux clear_refs)")


def test_parse_size() -> None:
    assert parse_size("1.5G") == int(1.5 * 2**30)
    assert parse_size("800M") == 800 * 2**20
    assert parse_size("2GiB") == 2 * 2**30
    assert parse_size("512mb") == 512 * 2**20
    assert parse_size(str(2**28)) == 2**28
    for bad in ("", "1.5X", "G", "-1G", "nanG", "1e3G", "10M", "1 5G"):
        with pytest.raises(UserError, match="--max-memory"):
            parse_size(bad)


def test_footprint_arithmetic() -> None:
    fp = Footprint(fixed=10 * 2**20, per_pixel=4096.0)
    assert fp.bytes(256, 2) == 10 * 2**20 + 4096 * 256 * 256 * 2
    side = fp.largest_side(fp.bytes(200, 1))
    assert side == 200
    assert fp.largest_side(5 * 2**20) == 0  # less than the fixed part
    assert Footprint(0.0, 0.0).largest_side(1.0) > 10**6  # no growth: any tile


@linux_only
def test_measured_footprint_grows_with_the_tile_and_is_cached(tmp_path: Path) -> None:
    from srgan_runtime.backends import open_backend

    backend = open_backend("default", "openvino" if _has("openvino") else "onnxruntime",
                           "cpu", "fp32")
    fp = measure_footprint(backend)  # in a fresh process
    assert fp is not None
    here = measure_here(backend)  # this process: freed memory still resident can hide growth
    assert here is not None and here.per_pixel <= 1.5 * fp.per_pixel
    # The bundled default's largest activation is 256 channels at twice the LR side: 4 KiB
    # per LR pixel in fp32; a backend holds at least that and a few more tensors.
    assert 4096 <= fp.per_pixel <= 16 * 4096, fp
    first = footprint(backend)
    assert first is not None
    cached = list((Path(os.environ["XDG_CACHE_HOME"]) / "srgan-toolkit" /
                   "footprint").glob("*.json"))
    assert cached and footprint(backend) == first


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


@linux_only
def test_budget_chooses_the_tile_and_refuses_what_cannot_fit() -> None:
    up = Upscaler("default", device="cpu", max_memory=1 << 40)
    assert up.memory_tile(2048, 2048) == (256, None)  # plenty: the requested tile
    rss = current_rss()
    assert rss is not None
    canvas = 2048 * 2048 * 17 * 4  # what memory_tile counts for the picture (bytes)
    tight = Upscaler("default", device="cpu", max_memory=int(rss + canvas + 300 * 2**20))
    side, problem = tight.memory_tile(2048, 2048)
    assert problem is None and 2 * tight.overlap + 16 <= side < 256 and side % 8 == 0
    hopeless = Upscaler("default", device="cpu", max_memory=int(rss))
    side, problem = hopeless.memory_tile(2048, 2048)
    assert side == 0 and "needs more than --max-memory" in problem
    assert hopeless.size_problem(2048, 2048) == problem
    batched = Upscaler("default", device="cpu", batch=4,
                       max_memory=int(rss + canvas + 700 * 2**20))
    side, problem = batched.memory_tile(2048, 2048)
    assert problem is None and batched.batch < 4  # the batch gives way before the tile
    off = Upscaler("default", device="cpu", max_memory=0)
    assert off.memory_tile(4096, 4096) == (256, None) and off.batch == 1


@linux_only
def test_srrun_stays_under_an_explicit_max_memory(tmp_path: Path) -> None:
    """A whole process (interpreter, libraries, model, canvas, encoder) under --max-memory,
    its own peak (VmHWM) written at exit."""
    from srgan_runtime.core.synth import texture

    src = tmp_path / "in.png"
    Image.fromarray(texture(np.random.default_rng(0), 640, 640)).save(src)
    peak_file = tmp_path / "peak"
    r = subprocess.run([sys.executable, str(REPORT_PEAK), str(peak_file),
                        "srgan_runtime.cli", "upscale", str(src), "-o",
                        str(tmp_path / "out.png"), "--model", "fast", "--max-memory", "450M",
                        "--no-progress"], capture_output=True, text=True, timeout=600)
    err = r.stderr
    assert r.returncode == 0, err
    peak_mib = int(peak_file.read_text()) / 2**20
    print(f"peak {peak_mib:.0f} MiB under --max-memory 450M (output 18.8 MiB); {err[-300:]}")
    assert peak_mib <= 450
    assert "leaves ~" in err and "for them" in err  # a smaller tile was chosen, and why
    assert Image.open(tmp_path / "out.png").size == (2560, 2560)


def test_max_memory_option_errors(tmp_path: Path) -> None:
    src = tmp_path / "in.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(src)
    r = subprocess.run([sys.executable, "-m", "srgan_runtime.cli", "upscale", str(src), "-o",
                        str(tmp_path / "o.png"), "--max-memory", "lots"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "--max-memory 'lots'" in r.stderr
    assert "Traceback" not in r.stderr


@linux_only
def test_auto_budget_counts_what_the_run_adds_not_the_libraries() -> None:
    """With torch, spandrel and OpenVINO loaded a process holds 300-600 MB before any work;
    the auto budget (output + 512 MiB) is for the run's own memory, so that resident size
    must not shrink the tile (it made tiles of 104-224 pixels, and 48 after an export)."""
    up = Upscaler("default", device="cpu", max_memory="auto")
    fp = up._footprint
    assert fp is not None
    up._rss_start = 3 << 30  # a process already holding 3 GiB
    expected = 256 if fp.bytes(256) <= 0.85 * (512 - 48) * 2**20 else None
    side, problem = up.memory_tile(2048, 2048)
    assert problem is None and side >= 200 and (expected is None or side == expected), (side, fp)
    assert up.memory_tile(125, 120) == (up.tile, None)  # one whole-image tile, untouched


@linux_only
def test_an_explicit_tile_is_kept_unless_memory_is_really_short(monkeypatch, caplog) -> None:
    import srgan_runtime.upscaler as upscaler

    whole = Upscaler("default", device="cpu", tile=0, max_memory="auto")
    assert whole.memory_tile(640, 480) == (0, None)  # --tile 0: the whole image, one tile
    big = Upscaler("default", device="cpu", tile=512, max_memory="auto")
    assert big.memory_tile(2048, 2048) == (512, None)
    monkeypatch.setattr(upscaler, "available_memory", lambda: 700 * 2**20)
    with caplog.at_level("INFO", logger="srgan_runtime.upscaler"):
        side, problem = big.memory_tile(2048, 2048)
    assert problem is None and side < 512
    assert "512-pixel tile needs" in caplog.text and "MiB of memory available" in caplog.text


def test_srrun_tile_0_runs_the_whole_image(tmp_path: Path) -> None:
    src = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (300, 400, 3), np.uint8)).save(src)
    r = subprocess.run([sys.executable, "-m", "srgan_runtime.cli", "upscale", str(src), "-o",
                        str(tmp_path / "o.png"), "--model", "fast", "--tile", "0",
                        "--no-progress"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "tile whole" in r.stderr and "INFO: tile " not in r.stderr, r.stderr
