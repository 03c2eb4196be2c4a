"""``srrun upscale --ray``: the same job as the local pipeline (inputs, output names,
``--skip-existing``/``--overwrite``, the run report), spread over a Ray cluster. Each Ray worker
is an actor holding its own backend, sized to the resources it asks for (``threads`` CPU
threads, or one GPU); files go out one at a time to whichever worker is free, inputs and outputs
on a filesystem every node sees.

A worker that dies mid-file (killed, its node lost) is restarted by Ray and its file retried
there (``max_restarts``/``max_task_retries``). Outputs are written atomically (temporary file,
then rename), and a retried file whose output was already renamed into place during this run is
not written again: nothing is lost, nothing is written twice. Setting ``SRRUN_WRITE_LOG`` to a
file makes every worker append the output path it writes (an audit trail; the tests use it)."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from .core.errors import UserError, first_line
from .core.lazy import optional
from .core.modelinfo import describe
from .pipeline import (
    FileResult,
    FileTask,
    JobSummary,
    PlannedJob,
    _plan,
    process_file,
    scale_label,
)
from .settings import UpscaleSettings, WriteOptions
from .upscaler import Upscaler

log = logging.getLogger(__name__)

# How many times Ray restarts a dead worker, and retries the file it was on.
RESTARTS = 3
DEFAULT_GCS_PORT = 6379  # a head node's address when only its host is given
PROBE_SECONDS = 5.0  # a reachable head node accepts at once; a firewall drops silently


@dataclass(frozen=True)
class RaySettings:
    address: str | None = None  # None: a local cluster on this machine; else ray.init(address)
    workers: int = 0  # 0: as many as the cluster's CPUs (or GPUs) allow
    threads: int = 1  # CPU threads per worker (its num_cpus)
    gpus: float = 0.0  # GPUs per worker (1 with --device cuda)


@dataclass
class _Task:
    k: int
    src: str
    dst: str
    extra: dict[str, Any] = field(default_factory=dict)


def _worker_class():
    import ray

    @ray.remote(max_restarts=RESTARTS, max_task_retries=RESTARTS)
    class UpscaleWorker:
        """One backend, kept for the whole job."""

        def __init__(self, engine: str, settings: UpscaleSettings) -> None:
            self.up = Upscaler(engine, settings)
            self.host = os.uname().nodename

        def describe(self) -> str:
            return self.up.describe()

        def run(self, src: str, dst: str, write: WriteOptions,
                run_start_ns: int) -> dict[str, Any]:
            t0 = time.perf_counter()
            out = Path(dst)
            worker = f"{self.host}:{os.getpid()}"
            if out.exists() and out.stat().st_mtime_ns >= run_start_ns:
                # An earlier attempt of this run finished the file before its worker died.
                return {"worker": worker, "status": "ok", "warnings": [],
                        "note": "written by an earlier attempt",
                        "seconds": round(time.perf_counter() - t0, 4)}
            res = process_file(self.up, FileTask(Path(src), out), write)
            audit = os.environ.get("SRRUN_WRITE_LOG")
            if audit and res.status == "ok":
                with open(audit, "a") as f:
                    f.write(f"{dst}\t{os.getpid()}\n")
            return {**asdict(res), "worker": worker}

    return UpscaleWorker


def _connect(settings: RaySettings):
    ray = optional("ray", "pip install 'srgan-toolkit[ray]'", "--ray")
    started = not ray.is_initialized()
    if started:
        check_reachable(settings.address)
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        try:
            ray.init(address=settings.address or None, **kwargs)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise UserError(f"--ray {settings.address}: cannot reach the cluster "
                            f"({first_line(exc)})") from None
    return ray, started


def check_reachable(address: str | None, timeout: float = PROBE_SECONDS) -> None:
    """Refuse a ``HOST:PORT`` address where nothing accepts a connection, in one line and
    within ``timeout``: ``ray.init`` itself retries such an address for minutes, printing its
    own warnings. ``auto`` and ``ray://`` addresses fail quickly in Ray and are left to it."""
    if not address or address == "auto" or "://" in address:
        return
    host, sep, port = address.rpartition(":")
    if not sep:
        host, port = address, str(DEFAULT_GCS_PORT)
    host = host.strip("[]")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"--ray {address}: expected HOST:PORT (the head node's GCS port, "
                        f"{DEFAULT_GCS_PORT} by default), auto, or ray://HOST:10001")
    import socket

    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        why = "no answer" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise UserError(f"--ray {address}: cannot reach a Ray cluster there ({why} within "
                        f"{timeout:g} s); start one with 'ray start --head' or check the "
                        "address") from None


def _worker_count(ray, settings: RaySettings, files: int) -> int:
    if settings.workers:
        return max(1, min(settings.workers, files))
    res = ray.cluster_resources()
    if settings.gpus:
        fit = int(res.get("GPU", 0) // settings.gpus)
    else:
        fit = int(res.get("CPU", 1) // max(1, settings.threads))
    return max(1, min(fit, files))


def run_ray_job(job: PlannedJob, cluster: RaySettings, *, progress: bool = True
                ) -> JobSummary:
    """Upscale every input of ``job`` to its output path on Ray workers; the same results as
    :func:`srgan_runtime.pipeline.run_job` (and the same report), plus each file's worker and
    attempts."""

    settings, write = job.settings, job.write
    info = describe(job.model, settings.scale)
    label = scale_label(info.scale, settings.outscale)
    results, todo = _plan(label, job.files, job.out, write.fmt, write.overwrite,
                          write.skip_existing)
    t0 = time.perf_counter()
    mp_out = 0.0
    if todo:
        ray, started = _connect(cluster)
        Worker = _worker_class()
        n = _worker_count(ray, cluster, len(todo))
        per_worker = replace(settings, threads=cluster.threads)
        workers = [Worker.options(num_cpus=cluster.threads, num_gpus=cluster.gpus).remote(
            str(job.model), per_worker) for _ in range(n)]
        log.info("ray: %d worker(s) x %d thread(s)%s on %s", n, cluster.threads,
                 f" x {cluster.gpus:g} GPU" if cluster.gpus else "",
                 cluster.address or "a local cluster")
        try:
            mp_out = _dispatch(ray, workers, [_Task(k, str(s), str(d)) for k, s, d in todo],
                               results, (write, time.time_ns()), progress)
        finally:
            for w in workers:
                ray.kill(w)
            if started:
                ray.shutdown()  # the connection (and a local cluster) this job started
    return JobSummary([results[k] for k in sorted(results)], time.perf_counter() - t0, mp_out)


def _dispatch(ray, workers, tasks: list[_Task], results: dict[int, FileResult], args: tuple,
              progress: bool) -> float:
    """Keep every worker busy with one file at a time until all are done."""
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(tasks), unit="img", dynamic_ncols=True)
    pending = list(reversed(tasks))
    running: dict[Any, tuple[_Task, Any]] = {}
    mp_out = 0.0

    def submit(worker) -> None:
        task = pending.pop()
        running[worker.run.remote(task.src, task.dst, *args)] = (task, worker)

    for w in workers:
        if pending:
            submit(w)
    while running:
        ready, _ = ray.wait(list(running), num_returns=1)
        task, worker = running.pop(ready[0])
        res = results[task.k]
        try:
            got = ray.get(ready[0])
        except ray.exceptions.RayTaskError as exc:
            if isinstance(exc.cause, UserError):  # the model cannot run: every file would fail
                raise UserError(str(exc.cause)) from None
            res.status, res.error = "failed", f"worker lost: {type(exc).__name__}"
            log.error("%s: %s", res.input, res.error)
        except ray.exceptions.RayError as exc:  # out of retries: the file fails, the job goes on
            res.status, res.error = "failed", f"worker lost: {type(exc).__name__}"
            log.error("%s: %s", res.input, res.error)
        else:
            for key in ("status", "error", "seconds", "in_size", "out_size", "tiles",
                        "fp32_tiles", "oom_retries"):
                if key in got:
                    setattr(res, key, got[key])
            res.warnings += got.get("warnings", [])
            res.worker = got.get("worker")
            if res.status == "ok" and res.out_size:
                mp_out += res.out_size[0] * res.out_size[1] / 1e6
            elif res.status == "failed":
                log.error("%s: %s", res.input, res.error)
        if bar is not None:
            bar.update(1)
        if pending:
            submit(worker)
    if bar is not None:
        bar.close()
    return mp_out


__all__ = ["RaySettings", "run_ray_job"]
