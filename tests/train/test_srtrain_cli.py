"""``srtrain`` end to end: fit, eval, bad input (one line, exit 2), Ctrl-C and resume."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from srgan_train.cli import cli

SRTRAIN = [sys.executable, "-m", "srgan_train.cli"]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*SRTRAIN, *args], capture_output=True, text=True, timeout=300)


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _fit_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["fit", "--data", str(data), "--val", str(data), "--preset", "tiny", "--steps", "6",
            "--batch-size", "4", "--patch-size", "32", "--val-every", "3", "--no-progress",
            "--out", str(out), *extra]


def test_fit_then_eval_json(tmp_path: Path, textures: Path) -> None:
    out = tmp_path / "run"
    r = invoke(*_fit_args(textures, out))
    assert r.exit_code == 0, r.output
    assert "done: step 6/6" in r.output and "best val PSNR" in r.output
    for name in ("config.json", "metrics.jsonl", "train.csv", "val.csv",
                 "checkpoints/last.pt", "generator.safetensors"):
        assert (out / name).is_file(), name
    r = invoke("eval", str(out), "--data", str(textures), "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["scale"] == 4 and len(doc["images"]) == 6
    assert set(doc["images"][0]) == {"name", "psnr", "ssim", "bicubic_psnr", "bicubic_ssim"}
    assert set(doc["mean"]) == {"psnr", "ssim", "bicubic_psnr", "bicubic_ssim"}
    r = invoke("eval", str(out / "generator.safetensors"), "--data", str(textures))
    assert r.exit_code == 0 and "mean" in r.output and "bicubic PSNR" in r.output


@pytest.mark.data
def test_eval_bicubic_only_on_set5(set5: Path) -> None:
    r = invoke("eval", "--bicubic-only", "--data", str(set5), "--scale", "4")
    assert r.exit_code == 0
    mean = next(ln for ln in r.output.splitlines() if ln.startswith("mean")).split()
    assert mean[1].startswith("28.4") and mean[2].startswith("0.81")


def _one_line_error(r: subprocess.CompletedProcess, needle: str) -> None:
    assert r.returncode == 2, (r.returncode, r.stderr)
    # Skipped files are warned about on their own lines; the failure itself is one line.
    lines = [ln for ln in r.stderr.splitlines() if ln.strip() and not ln.startswith("WARNING:")]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("srtrain: error: ")
    assert "Traceback" not in r.stderr
    assert needle in lines[0], lines[0]


def test_bad_input_is_one_line_exit_2(tmp_path: Path, textures: Path) -> None:
    _one_line_error(run("fit", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o")),
                    "data folder does not exist")
    (tmp_path / "empty").mkdir()
    _one_line_error(run("fit", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "o")),
                    "no images found")
    _one_line_error(run("fit", "--data", str(textures), "--preset", "nope",
                        "--out", str(tmp_path / "o")), "unknown preset")
    corrupt = tmp_path / "c.safetensors"
    corrupt.write_bytes(b"junk" * 10)
    _one_line_error(run("eval", str(corrupt), "--data", str(textures)), "c.safetensors")
    _one_line_error(run("fit", "--data", str(textures), "--init", str(corrupt),
                        "--out", str(tmp_path / "o")), "c.safetensors")
    # All corrupt images: skipped, counted, then one line saying nothing is usable.
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.png").write_bytes(b"not a png")
    _one_line_error(run("fit", "--data", str(bad), "--out", str(tmp_path / "o"),
                        "--no-progress"), "no usable training images")


def test_existing_run_folder_and_scale_mismatch(tmp_path: Path, textures: Path) -> None:
    out = tmp_path / "run"
    assert invoke(*_fit_args(textures, out)).exit_code == 0
    _one_line_error(run(*_fit_args(textures, out)), "use --resume")
    _one_line_error(run("eval", str(out), "--data", str(textures), "--scale", "2"),
                    "generator is x4, --scale is 2")
    _one_line_error(run(*_fit_args(textures, out, "--resume", "--batch-size", "8")),
                    "--batch-size 8 differs")
    gen = str(out / "generator.safetensors")
    _one_line_error(run("fit", "--data", str(textures), "--init", gen, "--scale", "2",
                        "--out", str(tmp_path / "o2")), "generator is x4")
    r = invoke(*_fit_args(textures, out, "--overwrite"))
    assert r.exit_code == 0


def test_debug_shows_traceback(tmp_path: Path) -> None:
    r = run("--debug", "fit", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o"))
    assert r.returncode != 0 and "Traceback" in r.stderr


def test_ctrl_c_saves_and_resume_finishes(tmp_path: Path, textures: Path) -> None:
    out = tmp_path / "run"
    args = ["fit", "--data", str(textures), "--preset", "tiny", "--steps", "100000",
            "--batch-size", "2", "--patch-size", "32", "--log-every", "1", "--save-every",
            "100000", "--no-progress", "--out", str(out)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([*SRTRAIN, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    deadline = time.time() + 120
    metrics = out / "metrics.jsonl"
    while time.time() < deadline and (not metrics.exists() or
                                      len(metrics.read_text().splitlines()) < 3):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "interrupted: step" in stdout and "--resume" in stderr
    assert "Traceback" not in stderr
    assert (out / "checkpoints/last.pt").is_file()
    stopped = json.loads(metrics.read_text().splitlines()[-1])["step"]
    r = run("fit", "--data", str(textures), "--out", str(out), "--resume", "--steps",
            str(stopped + 3), "--no-progress")
    assert r.returncode == 0, r.stderr
    assert f"done: step {stopped + 3}/{stopped + 3}" in r.stdout
    steps = [json.loads(ln)["step"] for ln in metrics.read_text().splitlines()]
    assert steps == list(range(1, stopped + 4))


def test_console_script_installed() -> None:
    exe = shutil.which("srtrain", path=str(Path(sys.executable).parent))
    assert exe, "srtrain console script missing (pip install -e .)"
    r = subprocess.run([exe, "presets"], capture_output=True, text=True)
    assert r.returncode == 0 and "srresnet" in r.stdout and "seed" in r.stdout


def test_synth_and_info(tmp_path: Path) -> None:
    r = invoke("synth", str(tmp_path / "s"), "--count", "2", "--size", "40x50")
    assert r.exit_code == 0 and len(list((tmp_path / "s").glob("*.png"))) == 2
    assert invoke("synth", str(tmp_path / "s"), "--size", "big").exit_code == 2


def test_eval_self_ensemble_is_labelled(generator_file: Path, textures: Path) -> None:
    res = invoke("eval", str(generator_file), "--data", str(textures), "--self-ensemble",
                 "--json")
    assert res.exit_code == 0
    assert json.loads(res.output)["self_ensemble"] is True
    res = invoke("eval", str(generator_file), "--data", str(textures), "--self-ensemble")
    assert "tiny+" in res.output
    res = CliRunner().invoke(cli, ["eval", "--bicubic-only", "--scale", "4", "--data",
                                   str(textures), "--self-ensemble"])
    assert res.exit_code == 2 and "no --self-ensemble" in res.output
