"""Smoke runs of the stand-alone benchmark scripts, so they cannot rot between measurement runs
(tiny sizes: the numbers they print here mean nothing)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _tiny_generator(folder: Path) -> Path:
    """An untrained tiny x4 generator file (the scripts' numbers mean nothing here)."""
    from srgan_train.archs import build_generator
    from srgan_train.checkpoint import save_generator
    from srgan_train.config import preset_config

    path = folder / "tiny.safetensors"
    save_generator(build_generator(preset_config("tiny", 4)).eval(), path, preset="tiny", step=0)
    return path


def test_tile_ratios_script(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    r = subprocess.run([sys.executable, str(HERE / "tile_ratios.py"), "--preset", "tiny",
                        "--tile", "24", "--tiles", "1", "--rounds", "1", "--json", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())
    rows = {row["variant"]: row for row in res["rows"]}
    assert rows["torch eager fp32 NCHW (baseline)"]["speedup"] == 1.0
    assert all(row["parity_gate_passed"] for row in res["rows"])
    assert res["matmul_peak_gflops"]["fp32"] > 0


def test_defaults_script(tmp_path: Path) -> None:
    from srgan_runtime.core.synth import write_textures

    generator_file_tiny = _tiny_generator(tmp_path)
    imgs = tmp_path / "imgs"
    write_textures(imgs, 2, (40, 48), seed=3)
    out = tmp_path / "d.json"
    r = subprocess.run([sys.executable, str(HERE / "defaults.py"), "--images", str(imgs),
                        "--count", "2", "--model", str(generator_file_tiny), "--json", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())
    assert len(res["rows"]) == 3 and res["rows"][0]["speedup_vs_loop"] == 1.0
    assert all(r["peak_rss_mib"] > 0 for r in res["rows"])
    assert res["defaults_vs_loop_worst_psnr"] >= 40


def test_int8_script(tmp_path: Path) -> None:
    import pytest

    data = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    if not (data / "Set5").is_dir() or not (data / "T91").is_dir():
        pytest.skip(f"Set5 and T91 not found under {data} (outside this environment)")
    pytest.importorskip("openvino", reason="openvino extra not installed")
    out = tmp_path / "i.json"
    r = subprocess.run([sys.executable, str(HERE / "int8.py"), "--data", str(data), "--tile", "32",
                        "--rounds", "1", "--sets", "Set5", "--check-set", "Set5",
                        "--json", str(out)], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())
    assert res["speed"]["openvino bf16"]["x_vs_openvino_bf16"] == 1.0
    assert res["quality_vs_hr"]["Set5"]["loss_db"] <= 0.1
    assert len(res["float_layers_tradeoff"]) == 4


def test_foreign_script(tmp_path: Path) -> None:
    import pytest

    from srgan_runtime.core.errors import UserError
    from srgan_runtime.core.foreign import import_spandrel

    try:
        import_spandrel()
    except UserError as exc:
        pytest.skip(str(exc))
    out = tmp_path / "f.json"
    r = subprocess.run([sys.executable, str(HERE / "foreign.py"), "--cases", "compact",
                        "--archs", "Compact", "--tile", "32", "--rounds", "1", "--json", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())
    assert res["works"][0]["loads"] and res["works"][0]["onnx_fp32"].startswith("dynamic")
    assert res["speed"][0]["gflops"] > 0 and res["speed"][0]["gmacs_per_lr_mp"] > 0


def test_gpu_kernels_script_dry_run_on_the_cpu(tmp_path: Path) -> None:
    """The GPU harness's row loop, parity and summary, with eager fp32 on the CPU (the compiled
    paths it times are tested in tests/backends/test_compile.py and tests/export/test_aoti.py)."""
    gen = _tiny_generator(tmp_path)
    r = subprocess.run([sys.executable, str(HERE / "gpu_kernels.py"), str(tmp_path / "out"),
                        "--device", "cpu", "--model", str(gen), "--tiles", "16",
                        "--batches", "1,2", "--paths", "eager-fp32"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / "out" / "gpu_kernels.json").read_text())
    assert [(row["tile"], row["batch"], row["status"]) for row in res["rows"]] == \
        [(16, 1, "ok"), (16, 2, "ok")]
    assert all(row["parity_db"] == float("inf") or row["parity_db"] > 90 for row in res["rows"])
    assert res["summary"]["speedup_vs_eager_fp32"] == 1.0
    assert (tmp_path / "out" / "gpu_kernels.txt").read_text().count("eager-fp32   ") == 2
