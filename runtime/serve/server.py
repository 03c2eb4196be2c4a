"""The HTTP server around the app: waitress with limits set from ``srrun serve``'s options, and
an orderly stop.

Limits, and why each is set rather than left at waitress's default:
- the request body is capped by waitress itself (``max_request_body_size``) at the upload limit
  plus the multipart framing, so an oversized upload is refused from its ``Content-Length``
  (or, chunked, as soon as it passes the cap) before the body is spooled to disk; waitress's
  own cap is 1 GB;
- ``connection_limit`` (waitress: 100) is raised, so that a hundred idle or stalled clients
  cannot lock everyone out, and ``channel_timeout`` (waitress: 120 s) shortened, so that such
  connections are closed soon; the file-descriptor limit is raised to fit where the system
  allows;
- errors waitress answers itself (a body over the cap, a malformed request) are JSON like the
  app's own.

Stopping (Ctrl-C, SIGTERM from systemd or ``docker stop``): the listening socket closes, queued
jobs are cancelled, running ones stop at their next tile, and the process waits for them at
most ``shutdown_timeout`` seconds, saying so; a second Ctrl-C quits at once. The upload folder
is removed in every case."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import resource
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass

import click

from ..core.cli import FiniteFloat
from ..core.errors import UserError
from ..core.options import setting

log = logging.getLogger(__name__)

FD_RESERVE = 64  # descriptors beside the connections: model files, logs, temp files, pipes


@dataclass(frozen=True)
class HttpConfig:
    """How the server listens and how much it holds open."""

    host: str = setting("127.0.0.1", help="Interface to listen on (0.0.0.0 exposes it to "
                                          "the network).")
    port: int = setting(8000, type=click.IntRange(1, 65535), help="Port to listen on.")
    http_threads: int = setting(
        12, type=click.IntRange(1, 256), default_text="--queue + 4",
        help="HTTP threads (waitress; not compute threads), so that requests over the queue "
             "are answered 429 at once rather than left waiting.")
    connection_limit: int = setting(
        1000, type=click.IntRange(1, 100_000),
        help="Open connections held at once; more wait in the listen backlog. The open-file "
             "limit is raised to fit where the system allows.")
    channel_timeout: int = setting(
        30, type=click.IntRange(1, 3600),
        help="Seconds a connection may sit idle or stall mid-request before it is closed.")
    shutdown_timeout: float = setting(
        30.0, type=FiniteFloat(0),
        help="On Ctrl-C or SIGTERM, seconds to wait for running jobs (they stop at their next "
             "tile); a second Ctrl-C quits at once.")


class _Signals:
    """Counts SIGINT/SIGTERM. The handler only records: raising from a handler can land
    inside a finaliser, where Python swallows the exception and the stop is lost."""

    def __init__(self) -> None:
        self.count = 0
        self.name = ""
        self.event = threading.Event()

    def __call__(self, signum: int, _frame: object) -> None:
        self.count += 1
        self.name = self.name or signal.Signals(signum).name
        self.event.set()


def fit_fd_limit(connections: int) -> int:
    """The connection limit the process's descriptor limit allows: the soft limit is raised
    towards the hard one if needed; what still does not fit is clamped, with a warning."""
    need = connections + FD_RESERVE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft != resource.RLIM_INFINITY and soft < need:
        fitted = max(1, soft - FD_RESERVE)
        log.warning("--connection-limit %d is over what the open-file limit (%d) allows: %d",
                    connections, soft, fitted)
        return fitted
    return connections


def _json_error_channels(server) -> None:
    """Make the errors waitress answers by itself JSON ``{"error": ...}`` like the app's."""
    from waitress.channel import HTTPChannel
    from waitress.task import ErrorTask

    class JsonErrorTask(ErrorTask):
        def execute(self) -> None:
            e = self.request.error
            if e.code == 413:
                limit = self.channel.adj.max_request_body_size
                text = (f"upload over the limit of {limit:,} bytes (the request's body, "
                        "file and form fields together)")
            else:
                text = str(e.body).splitlines()[0] if e.body else e.reason
            body = json.dumps({"error": text}).encode()
            self.status = f"{e.code} {e.reason}"
            self.response_headers.append(("Content-Type", "application/json"))
            self.set_close_on_finish()
            self.content_length = len(body)
            self.write(body)

    class JsonChannel(HTTPChannel):
        error_task_class = JsonErrorTask

    listeners = [server, *_socket_map(server).values()]
    for listener in listeners:
        if hasattr(listener, "channel_class"):
            listener.channel_class = JsonChannel


def _socket_map(server) -> dict:
    """Every dispatcher (listening sockets and connections) of a waitress server: one
    listener's ``_map``, or a multi-socket server's ``map``."""
    found = getattr(server, "map", None)
    return found if found is not None else server._map


def make_server(app, http: HttpConfig, body_limit: int):
    """A waitress server for ``app`` with the limits above (not yet running)."""
    try:
        from waitress import create_server
    except ImportError:
        raise UserError("srrun serve needs the [serve] extra: pip install "
                        "'srgan-toolkit[serve]'") from None
    try:
        server = create_server(
            app, host=http.host, port=http.port, threads=http.http_threads, ident="srrun",
            max_request_body_size=body_limit,
            connection_limit=fit_fd_limit(http.connection_limit),
            channel_timeout=http.channel_timeout,
            # idle connections are looked for this often (waitress: every 30 s)
            cleanup_interval=max(1, min(30, http.channel_timeout // 2)),
            clear_untrusted_proxy_headers=True)
    except OSError as exc:
        raise UserError(f"cannot listen on {http.host}:{http.port} ({exc.strerror or exc})"
                        ) from None
    _json_error_channels(server)
    return server


class _ClosedTrigger(logging.Filter):
    """Once the port is closed, a request thread that finishes wakes the (ended) loop through
    its closed trigger and waitress logs the EBADF with a traceback: expected then, and not
    the user's concern."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (isinstance(exc, OSError) and exc.errno == errno.EBADF)


def run_until_stopped(server, queue, upload_dir: str, http: HttpConfig) -> int:
    """Serve until SIGINT or SIGTERM, then stop in order (see the module's docstring).
    Returns the exit status: 0 after an orderly stop, 1 when jobs outlived the shutdown
    timeout; a second Ctrl-C exits at once with 130."""
    signals = _Signals()
    handlers = {s: signal.signal(s, signals) for s in (signal.SIGINT, signal.SIGTERM)}
    quiet = _ClosedTrigger()
    loop = threading.Thread(target=server.run, name="srrun-http", daemon=True)
    loop.start()
    try:
        while not signals.event.wait(0.5) and loop.is_alive():
            pass
        why = signals.name or "the server loop ended"
        logging.getLogger("waitress").addFilter(quiet)
        _close_sockets(server, loop)  # the port closes: no new connection, no new work
        running, cancelled = queue.stop()
        log.warning("stopping (%s): port closed, %d queued job(s) cancelled, %d running; "
                    "waiting up to %g s for them to stop at their next tile (Ctrl-C again to "
                    "quit at once)", why, cancelled, len(running), http.shutdown_timeout)
        t0 = time.monotonic()
        left = len(running)
        while left and time.monotonic() - t0 < http.shutdown_timeout:
            if signals.count > 1:
                shutil.rmtree(upload_dir, ignore_errors=True)
                log.warning("stopped at once: %d running job(s) abandoned", left)
                _flush_and_exit(130)
            left = queue.wait(min(0.2, http.shutdown_timeout))
        server.task_dispatcher.shutdown(timeout=1)
        shutil.rmtree(upload_dir, ignore_errors=True)
        if left:
            log.warning("%d job(s) still running after %g s: stopping without them", left,
                        http.shutdown_timeout)
            _flush_and_exit(1)
        log.info("stopped in %.1f s", time.monotonic() - t0)
        return 0
    finally:
        shutil.rmtree(upload_dir, ignore_errors=True)
        logging.getLogger("waitress").removeFilter(quiet)
        for s, h in handlers.items():
            signal.signal(s, h)


def _close_sockets(server, loop: threading.Thread) -> None:
    """Close the listening socket and every connection from inside the server's loop (its
    trigger runs the call there), which then ends."""
    from waitress import wasyncore

    sockets = _socket_map(server)
    trigger = next((d.trigger for d in [server, *sockets.values()]
                    if getattr(d, "trigger", None) is not None), None)
    if trigger is not None and loop.is_alive():
        trigger.pull_trigger(lambda: wasyncore.close_all(sockets))
        loop.join(timeout=5)
    if loop.is_alive() or trigger is None:
        wasyncore.close_all(sockets)


def _flush_and_exit(code: int) -> None:
    """Exit now without waiting for worker threads (a tile in flight cannot be interrupted)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


__all__ = ["HttpConfig", "fit_fd_limit", "make_server", "run_until_stopped"]
