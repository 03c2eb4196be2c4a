"""``srexport`` end to end: gate numbers printed, bad input as one line, TensorRT missing."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import data_root

SREXPORT = [sys.executable, "-m", "srgan_export.cli"]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*SREXPORT, *args], capture_output=True, text=True, timeout=600)


def _one_line_error(r: subprocess.CompletedProcess, needle: str) -> None:
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip() and not ln.startswith(("INFO:",
                                                                                    "WARNING:"))]
    assert len(lines) == 1 and lines[0].startswith("srexport: error: "), r.stderr
    assert needle in lines[0], lines[0]


def test_onnx_prints_gate_numbers_then_verify(generator_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    r = run("onnx", str(generator_file), "-o", str(out), "--data", str(data_root()))
    assert r.returncode == 0, r.stderr
    assert "PASS ONNX Runtime CPU fp32 vs PyTorch fp32: worst PSNR" in r.stdout
    assert "smallest atol that passes" in r.stdout and f"wrote {out}" in r.stdout
    r = run("verify", str(out), "--against", str(generator_file), "--json",
            "--data", str(data_root()))
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["passed"] and doc["gate"]["min_psnr"] == 60.0 and len(doc["cases"]) >= 4
    _one_line_error(run("onnx", str(generator_file), "-o", str(out)), "exists")
    r = run("onnx", str(generator_file), "-o", str(out), "--overwrite", "--fp16", "--no-verify")
    assert r.returncode == 0 and "NOT verified" in r.stdout


def test_bad_input(generator_file: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"junk")
    _one_line_error(run("onnx", str(bad), "-o", str(tmp_path / "x.onnx")), "bad.safetensors")
    _one_line_error(run("onnx", str(tmp_path / "missing"), "-o", str(tmp_path / "x.onnx")),
                    "no such file")
    _one_line_error(run("onnx", str(generator_file), "-o", str(tmp_path / "x.onnx"),
                        "--opset", "21"), "opset 21")
    _one_line_error(run("onnx", str(generator_file), "-o", str(tmp_path / "x.onnx"),
                        "--static", "1,a,2"), "--static")
    _one_line_error(run("onnx", str(generator_file), "-o", "/proc/x.onnx"), "/proc")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"nope")
    _one_line_error(run("trt", str(junk), "-o", str(tmp_path / "x.plan")), "junk.onnx")
    assert not list(tmp_path.glob("x.*"))


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None,
                    reason="TensorRT is installed here: the missing-TensorRT message can't show")
def test_trt_without_tensorrt_is_one_line(generator_file: Path, tmp_path: Path) -> None:
    onnx_path = tmp_path / "m.onnx"
    assert run("onnx", str(generator_file), "-o", str(onnx_path), "--fp16", "--no-verify"
               ).returncode == 0
    _one_line_error(run("trt", str(onnx_path), "-o", str(tmp_path / "m.plan")),
                    "TensorRT is not installed")
    assert not (tmp_path / "m.plan").exists()
    # Profile errors are found before TensorRT is needed.
    _one_line_error(run("trt", str(onnx_path), "-o", str(tmp_path / "m.plan"),
                        "--min", "1x64x64", "--opt", "1x32x32"), "min <= opt <= max")
    _one_line_error(run("trt", str(onnx_path), "-o", str(tmp_path / "m.plan"),
                        "--opt-level", "9"), "opt-level")
