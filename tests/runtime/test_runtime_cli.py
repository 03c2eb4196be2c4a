"""``srrun upscale`` end to end: files, folders, bad files, report, overwrite rules."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SRRUN = [sys.executable, "-m", "srgan_runtime.cli"]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*SRRUN, *args], capture_output=True, text=True, timeout=600)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    d = tmp_path / "in"
    (d / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(d / "a.png")
    Image.fromarray(rng.integers(0, 256, (17, 11, 4), dtype=np.uint8)).save(d / "b.png")
    Image.fromarray(rng.integers(0, 256, (9, 13), dtype=np.uint8)).save(d / "sub" / "c.jpg")
    (d / "notes.txt").write_text("not an image, ignored in folders")
    (d / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    full = (d / "a.png").read_bytes()
    (d / "trunc.png").write_bytes(full[: len(full) // 2])
    return d


def test_folder_job_carries_on_and_reports(generator_file: Path, folder: Path,
                                           tmp_path: Path) -> None:
    out = tmp_path / "out"
    report = tmp_path / "run.json"
    r = run("upscale", str(folder), "-r", "-o", str(out), "--engine", str(generator_file),
            "--tile", "16", "--overlap", "4", "--report", str(report), "--no-progress")
    assert r.returncode == 1, r.stderr  # some files failed
    assert "upscaled 3 image(s)" in r.stdout and "2 failed" in r.stdout
    assert "Traceback" not in r.stderr
    assert "broken.png" in r.stderr and "trunc.png" in r.stderr
    with Image.open(out / "a_x4.png") as im:
        assert im.size == (120, 80)
    with Image.open(out / "b_x4.png") as im:
        assert im.size == (44, 68) and im.mode == "RGBA"
    with Image.open(out / "sub" / "c_x4.jpg") as im:
        assert im.size == (52, 36) and im.mode == "L"
    doc = json.loads(report.read_text())
    assert doc["ok"] == 3 and doc["failed"] == 2
    statuses = {Path(f["input"]).name: f["status"] for f in doc["files"]}
    assert statuses == {"a.png": "ok", "b.png": "ok", "c.jpg": "ok", "broken.png": "failed",
                        "trunc.png": "failed"}
    # A second run refuses to overwrite (before any work), --skip-existing skips.
    r = run("upscale", str(folder / "a.png"), "-o", str(out), "--engine", str(generator_file),
            "--no-progress")
    assert r.returncode == 2 and "exists" in r.stderr
    r = run("upscale", str(folder / "a.png"), "-o", str(out), "--engine", str(generator_file),
            "--skip-existing", "--no-progress")
    assert r.returncode == 0 and "1 skipped" in r.stdout


def test_single_file_to_named_output_and_format(generator_file: Path, folder: Path,
                                                tmp_path: Path) -> None:
    out = tmp_path / "big.webp"
    r = run("upscale", str(folder / "a.png"), "-o", str(out), "--engine", str(generator_file),
            "--no-progress", "--outscale", "2")
    assert r.returncode == 0, r.stderr
    with Image.open(out) as im:
        assert im.size == (60, 40) and im.format == "WEBP"


def test_bad_requests(generator_file: Path, folder: Path, tmp_path: Path) -> None:
    r = run("upscale", str(folder / "a.png"), "-o", str(folder / "a.png"), "--engine",
            str(generator_file), "--no-progress", "--overwrite")
    assert r.returncode == 2 and "output path is the input file" in r.stderr
    r = run("upscale", str(folder / "a.png"), "-o", str(tmp_path / "o"), "--engine",
            str(generator_file), "--max-pixels", "100", "--no-progress")
    assert r.returncode == 1 and "--max-pixels" in r.stderr
    r = run("upscale", str(tmp_path / "missing.png"), "-o", str(tmp_path / "o"), "--engine",
            str(generator_file))
    assert r.returncode == 2 and r.stderr.startswith("srrun: error: ")
    r = run("upscale", str(folder / "notes.txt"), "-o", str(tmp_path / "o"), "--engine",
            str(generator_file), "--no-progress")
    assert r.returncode == 1 and "notes.txt" in r.stderr and "Traceback" not in r.stderr
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"junk")
    r = run("upscale", str(folder / "a.png"), "-o", str(tmp_path / "o"), "--engine", str(bad))
    assert r.returncode == 2 and "bad.safetensors" in r.stderr
    r = run("upscale", str(folder / "a.png"), "-o", str(tmp_path / "o"), "--engine",
            str(generator_file), "--tile", "16", "--overlap", "8")
    assert r.returncode == 2 and "no core" in r.stderr
    r = run("upscale", str(folder / "a.png"), "-o", str(tmp_path / "o"), "--no-progress")
    from srgan_runtime.core.modelinfo import bundled_models

    if "default" in bundled_models():  # no --engine: the bundled default model
        assert r.returncode == 0, r.stderr
    else:
        assert r.returncode == 2 and "--model" in r.stderr


def test_foreign_onnx_scale(generator_file: Path, folder: Path, tmp_path: Path) -> None:
    import onnx
    from conftest import data_root

    from srgan_export import OnnxExportOptions, export_onnx

    path = tmp_path / "m.onnx"
    export_onnx(generator_file, path, OnnxExportOptions(data_dir=data_root()))
    model = onnx.load(str(path))
    del model.metadata_props[:]
    onnx.save(model, str(path))
    args = ["upscale", str(folder / "a.png"), "-o", str(tmp_path / "o"), "--engine", str(path),
            "--backend", "onnxruntime", "--no-progress"]
    r = run(*args)
    assert r.returncode == 2 and "pass --scale" in r.stderr
    r = run(*args, "--scale", "2")
    assert r.returncode == 2 and "not an x2 RGB model" in r.stderr
    r = run(*args, "--scale", "4")
    assert r.returncode == 0, r.stderr
