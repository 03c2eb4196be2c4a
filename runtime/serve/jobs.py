"""The server's bounded work queue and its results: a fixed number of inference workers, at
most ``capacity`` jobs waiting or running (a burst is refused, not buffered), results under
random ids that expire and whose total size is capped. Nothing here touches the filesystem."""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

ID_BYTES = 16  # 22 URL-safe characters
ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def valid_id(text: str) -> bool:
    """Whether ``text`` could be an id this queue made (checked before any lookup)."""
    return len(text) == 22 and set(text) <= ID_CHARS


class QueueFull(Exception):
    """Every slot is taken: the client should retry later."""


class Stopping(QueueFull):
    """The server is shutting down: no new job is taken."""


class Cancelled(Exception):
    """Raised inside a running job (from its progress callback) when the server stops."""


CANCELLED = "cancelled: the server is shutting down"


@dataclass
class Job:
    """One upscale request: its progress, then its encoded result or error."""

    model: str
    filename: str  # the download name (made from the upload's name, never used as a path)
    mime: str
    payload: Any = None  # what the worker needs; dropped when it is done
    id: str = field(default_factory=lambda: secrets.token_urlsafe(ID_BYTES))
    state: str = "queued"  # queued | running | done | failed
    done: int = 0
    total: int = 0
    error: str | None = None
    status: int = 200  # the HTTP status of a failure
    result: bytes | None = None
    size: tuple[int, int] = (0, 0)  # output width, height
    created: float = field(default_factory=time.monotonic)
    finished: float | None = None
    future: Future | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "state": self.state, "done": self.done, "total": self.total,
                "error": self.error, "model": self.model, "width": self.size[0],
                "height": self.size[1], "seconds": round((self.finished or time.monotonic())
                                                         - self.created, 2)}


class JobQueue:
    """``run(job)`` executes a job on one of ``workers`` threads; at most ``capacity`` jobs are
    queued or running; finished jobs are kept ``ttl`` seconds and their results within
    ``max_result_bytes`` in all (the oldest go first)."""

    def __init__(self, run: Callable[[Job], None], workers: int = 1, capacity: int = 8,
                 ttl: float = 600.0, max_result_bytes: int = 512 << 20) -> None:
        self._run = run
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="upscale")
        self.capacity, self.ttl, self.max_result_bytes = capacity, ttl, max_result_bytes
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._active = 0
        self.stopping = threading.Event()

    @property
    def active(self) -> int:
        """Jobs queued or running."""
        return self._active

    def submit(self, job: Job) -> Job:
        with self._lock:
            self._expire()
            if self.stopping.is_set():
                raise Stopping
            if self._active >= self.capacity:
                raise QueueFull
            self._active += 1
            self._jobs[job.id] = job
        job.future = self._pool.submit(self._work, job)
        return job

    def _work(self, job: Job) -> None:
        job.state = "running"
        try:
            self.check_stop()
            self._run(job)
            job.state = "done" if job.error is None else "failed"
        except Cancelled:
            job.error, job.status, job.state = CANCELLED, 503, "failed"
        except Exception as exc:  # a bug, not bad input: reported as such, the worker lives on
            job.error, job.status, job.state = f"internal error ({type(exc).__name__})", 500, \
                "failed"
            raise
        finally:
            job.payload = None
            job.finished = time.monotonic()
            with self._lock:
                self._active -= 1
                self._cap_results()

    def get(self, job_id: str) -> Job | None:
        if not valid_id(job_id):
            return None
        with self._lock:
            self._expire()
            return self._jobs.get(job_id)

    def _expire(self) -> None:
        now = time.monotonic()
        for key in [k for k, j in self._jobs.items()
                    if j.finished is not None and now - j.finished > self.ttl]:
            del self._jobs[key]

    def _cap_results(self) -> None:
        done = sorted((j for j in self._jobs.values() if j.result is not None),
                      key=lambda j: j.finished or 0)
        total = sum(len(j.result) for j in done)
        while done and total > self.max_result_bytes:
            old = done.pop(0)
            total -= len(old.result)
            del self._jobs[old.id]

    def check_stop(self) -> None:
        """Raise :class:`Cancelled` once the server is stopping (called between tiles)."""
        if self.stopping.is_set():
            raise Cancelled

    def stop(self) -> tuple[list[Job], int]:
        """Take no new job, cancel the queued ones, and let running ones stop at their next
        tile (through :meth:`check_stop`). Returns the running jobs and how many were
        cancelled."""
        self.stopping.set()
        with self._lock:
            jobs = list(self._jobs.values())
        cancelled = 0
        for job in jobs:
            if job.state == "queued" and job.future is not None and job.future.cancel():
                job.error, job.status, job.state = CANCELLED, 503, "failed"
                job.finished = time.monotonic()
                cancelled += 1
        self._pool.shutdown(wait=False, cancel_futures=True)
        return [j for j in jobs if j.state == "running"], cancelled

    def wait(self, timeout: float) -> int:
        """Wait up to ``timeout`` seconds for running jobs; how many are still running."""
        deadline = time.monotonic() + timeout
        with self._lock:
            futures = [j.future for j in self._jobs.values() if j.future is not None]
        for fut in futures:
            with contextlib.suppress(Exception):  # cancelled, or running at the deadline
                fut.exception(timeout=max(0.0, deadline - time.monotonic()))
        return sum(1 for f in futures if not f.done())
