"""`srtrain fit` under torchrun: 2 processes with the gloo backend on the CPU train on the same
global batches as one process (each rank its half), so the logged loss and the weights match a
single-process run; the checkpoint is the same format and resumes under either."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from srgan_runtime.core.errors import UserError
from srgan_train.distributed import shard_indices

FIT = ["fit", "--preset", "tiny", "--scale", "4", "--batch-size", "4", "--patch-size", "32",
       "--log-every", "1", "--val-every", "1000", "--workers", "0", "--no-progress",
       "--device", "cpu", "--lr-schedule", "cosine"]


def test_shards_partition_the_global_batches() -> None:
    single = shard_indices(2, 5, 4, 0, 1)
    ranks = [shard_indices(2, 5, 4, r, 2) for r in range(2)]
    assert single == list(range(8, 20))
    for step in range(3):  # each step: rank 0 the first half, rank 1 the second
        assert ranks[0][2 * step:2 * step + 2] + ranks[1][2 * step:2 * step + 2] == \
            single[4 * step:4 * step + 4]
    with pytest.raises(UserError, match="divisible"):
        shard_indices(0, 1, 5, 0, 2)


def _losses(run: Path) -> list[float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if r["kind"] == "train"]


def _torchrun(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node",
                           "2", "-m", "srgan_train.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def _single(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "srgan_train.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_two_processes_match_one_and_resume(tmp_path: Path) -> None:
    from srgan_runtime.core.synth import write_textures
    from srgan_train.checkpoint import load_generator

    write_textures(tmp_path / "data", 6, (64, 64), seed=1)
    base = [*FIT, "--data", "data", "--steps", "6"]
    for runner, out in ((_single, "single"), (_torchrun, "ddp")):
        first = runner([*base, "--out", out, "--steps", "3"], tmp_path)
        assert first.returncode == 0, first.stderr[-2000:]
        if out == "ddp":
            assert first.stdout.count("done: step 3/3") == 1  # rank 0 alone reports
            shutil.copytree(tmp_path / "ddp", tmp_path / "ddp-then-single")
        again = runner(["fit", "--out", out, "--resume", "--steps", "6", "--no-progress"],
                       tmp_path)
        assert again.returncode == 0, again.stderr[-2000:]
    cross = _single(["fit", "--out", "ddp-then-single", "--resume", "--steps", "6",
                     "--no-progress"], tmp_path)
    assert cross.returncode == 0, cross.stderr[-2000:]
    one, two, mixed = (_losses(tmp_path / n) for n in ("single", "ddp", "ddp-then-single"))
    assert len(one) == len(two) == len(mixed) == 6
    np.testing.assert_allclose(two, one, rtol=1e-5)
    np.testing.assert_allclose(mixed, one, rtol=1e-5)
    weights = [load_generator(tmp_path / n / "generator.safetensors").model.state_dict()
               for n in ("single", "ddp")]
    worst = max(float((weights[0][k] - weights[1][k]).abs().max()) for k in weights[0])
    print(f"per-step loss rel. diff <= 1e-5; weights max |diff| {worst:.2e}")
    assert worst < 1e-5
