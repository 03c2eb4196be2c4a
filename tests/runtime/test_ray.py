"""`srrun upscale --ray` on a local Ray cluster of this machine (2 workers): the same outputs,
names, report and --skip-existing as the local path, and a worker killed mid-run (SIGKILL) is
restarted by Ray with its file retried: every file is written, none twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("ray", reason="the [ray] extra is not installed")


def _srrun(*args: str, env: dict | None = None, wait: bool = True):
    cmd = [sys.executable, "-m", "srgan_runtime.cli", "upscale", *args, "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **(env or {})})
    if wait:
        proc.communicate(timeout=300)
    return proc


def _ray_workers() -> list[int]:
    pids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if b"UpscaleWorker" in (p / "cmdline").read_bytes():
                    pids.append(int(p.name))
            except OSError:
                pass
    return pids


def test_ray_job_survives_a_killed_worker(tmp_path: Path) -> None:
    from srgan_runtime.core.synth import write_textures

    src, out, audit = tmp_path / "in", tmp_path / "out", tmp_path / "writes.log"
    write_textures(src, 10, (160, 128), seed=4)
    proc = _srrun(str(src), "-o", str(out), "--ray", "--ray-workers", "2", "--tile", "64",
                  "--report", str(tmp_path / "run.json"), env={"SRRUN_WRITE_LOG": str(audit)},
                  wait=False)
    killed = None
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        done = len(list(out.glob("*.png"))) if out.is_dir() else 0
        workers = _ray_workers()
        if done >= 2 and workers and killed is None:
            killed = workers[0]
            os.kill(killed, signal.SIGKILL)  # mid-run: the worker is busy with a file
        time.sleep(0.05)
    output, _ = proc.communicate(timeout=60)
    assert killed is not None, "the job ended before a worker could be killed"
    assert proc.returncode == 0, output[-3000:]
    report = json.loads((tmp_path / "run.json").read_text())
    assert report["ok"] == 10 and report["failed"] == 0, output[-3000:]
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"tex_{i:03d}_x4.png" for i in range(10)]  # no temporary files left
    for p in out.iterdir():
        assert Image.open(p).size == (512, 640)
    writes = [line.split("\t")[0] for line in audit.read_text().splitlines()]
    assert sorted(writes) == sorted(str(out / n) for n in names)  # each exactly once
    pids = {f["worker"].rsplit(":", 1)[1] for f in report["files"]}
    assert len(pids) >= 3, pids  # the killed worker was restarted under a new process

    again = _srrun(str(src), "-o", str(out), "--ray", "--skip-existing", "--report",
                   str(tmp_path / "again.json"), env={"SRRUN_WRITE_LOG": str(audit)})
    assert again.returncode == 0
    second = json.loads((tmp_path / "again.json").read_text())
    assert second["skipped"] == 10 and len(audit.read_text().splitlines()) == 10
