"""The Flask application behind ``srrun serve``: the page (static files served by the app, no
external resource), a JSON/HTTP API, and the safety rules: uploads are bounded in bytes and
pixels before decoding, decoded from a private temporary file with a random name (removed
whatever happens), results live under random ids in memory (expiring, size-capped), inference
runs on a bounded queue, and every error is JSON with a meaningful status (400 bad image, 413
too large, 429 queue full, 500 only for the server's own faults)."""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import tempfile
import threading
import weakref
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import click

from ..core.cli import FiniteFloat
from ..core.errors import ImageError, SkippedImage, UserError
from ..core.imageio import encode_image, load_image
from ..core.modelinfo import bundled_models, describe, resolve_model
from ..core.options import setting
from ..settings import UpscaleSettings
from ..upscaler import Upscaler
from .jobs import CANCELLED, Job, JobQueue, QueueFull, Stopping
from .server import HttpConfig, make_server, run_until_stopped

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
# Output formats: the file extension and MIME type for each writer format.
MIME = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp"}
_FROM_PILLOW = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp"}
MiB = 1 << 20
# The multipart framing around the file (boundaries, part headers, the model and format
# fields): a request body may exceed the file's limit by this much.
FORM_OVERHEAD = 64 << 10
# Form text fields held in memory. werkzeug applies this to its multipart parser's buffer,
# which holds up to two 64 KiB read chunks of the file: anything under ~130 KiB refuses
# ordinary photos.
FORM_MEMORY = 1 << 20


def _serve_settings() -> UpscaleSettings:
    # 64 MP of output: a 4 MP photo x4; the library's 1 GP would let one request hold 3 GB.
    return UpscaleSettings(max_output_pixels=64_000_000)


@dataclass(frozen=True)
class ServeConfig:
    """What ``srrun serve`` exposes and how much it accepts; ``upscale`` is how every model
    on offer runs."""

    models: tuple[str, ...] = setting(
        (), flags=("--model", "--engine"), multiple=True,
        help="A model to offer (repeatable) [default: every bundled model].")
    workers: int = setting(1, type=click.IntRange(1, 64), help="Images upscaled at once.")
    queue: int = setting(8, type=click.IntRange(1, 10000),
                         help="Images queued or running before new ones get 429 (busy).")
    max_upload_mb: float = setting(20.0, type=FiniteFloat(0, lo_open=True),
                                   help="Largest upload accepted, in MiB.")
    max_pixels: int = setting(4_000_000, type=click.IntRange(1), help="Input pixels per image.")
    upscale: UpscaleSettings = dataclasses.field(default_factory=_serve_settings)
    result_ttl: float = 600.0  # seconds a finished result is kept
    max_result_mb: int = 512
    wait_seconds: float = 600.0  # POST /api/upscale waits this long for its result

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * MiB)

    @property
    def body_limit(self) -> int:
        """The largest request body accepted: the file's limit plus the multipart framing."""
        return self.max_upload_bytes + FORM_OVERHEAD


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def safe_stem(name: str | None) -> str:
    """A download name from the client's file name: its last path part, without extension,
    reduced to letters, digits, ``._-`` (never used as a path)."""
    base = re.split(r"[\\/]", name or "")[-1]
    stem = base.rsplit(".", 1)[0] if "." in base else base
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._")[:60]
    return stem or "image"


class Models:
    """The models on offer, opened on first use (the default one at start)."""

    def __init__(self, config: ServeConfig, factory=None) -> None:
        specs = config.models or tuple(bundled_models())
        self.paths: dict[str, Path] = {}
        for spec in specs:
            path = resolve_model(spec)
            name = spec if spec in bundled_models() else safe_stem(path.name)
            self.paths[name] = path
        if not self.paths:
            raise UserError("no model to serve: pass --model (this build has no bundled model)")
        self.info = {n: describe(p) for n, p in self.paths.items()}
        self.default = next(iter(self.paths))
        self._factory = factory or (lambda path: _upscaler(path, config))
        self._open: dict[str, Any] = {}
        self._lock = threading.Lock()

    def get(self, name: str):
        with self._lock:
            if name not in self._open:
                self._open[name] = self._factory(self.paths[name])
            return self._open[name]

    def listing(self) -> list[dict[str, Any]]:
        return [{"name": n, "scale": i.scale, "arch": i.arch, "preset": i.preset,
                 "summary": i.summary(), "default": n == self.default}
                for n, i in self.info.items()]


def _upscaler(path: Path, config: ServeConfig):
    return Upscaler(path, config.upscale)


class _Service:
    """What the routes share: the models, the job queue and the private upload folder."""

    def __init__(self, config: ServeConfig, models: Models, upload_dir: str) -> None:
        self.config, self.models, self.upload_dir = config, models, upload_dir
        self.queue = JobQueue(self.run, config.workers, config.queue, config.result_ttl,
                              config.max_result_mb << 20)

    def run(self, job: Job) -> None:
        """Upscale and encode one job (a queue worker)."""

        def on_tile(_key, done: int, total: int) -> None:
            job.done, job.total = done, total
            self.queue.check_stop()  # a stopping server cancels the job here, between tiles

        up = self.models.get(job.model)
        ((_, out, stats),) = list(up.upscale_many([(job.id, job.payload)], on_tile=on_tile))
        if out is None:
            job.error, job.status = stats.error or "upscaling failed", 422
            return
        fmt = {v: k for k, v in MIME.items()}[job.mime]
        job.result = encode_image(out, fmt)  # 16-bit stays 16 in PNG, is rounded for JPEG/WebP
        job.size = (out.width, out.height)

    def accept(self, request) -> Job:
        """Check and decode the upload; a Job ready for the queue, or an ApiError."""
        upload = request.files.get("image")
        if upload is None:
            raise ApiError(400, "no image: send the file as the multipart field 'image'")
        name = request.form.get("model") or self.models.default
        if name not in self.models.paths:
            raise ApiError(400, f"unknown model {name[:40]!r} (see /api/models)")
        want = request.form.get("format", "png")
        if want not in ("png", "input"):
            raise ApiError(400, "format must be png or input")
        limit = self.config.max_upload_bytes
        data = upload.read(limit + 1)
        if not data:
            raise ApiError(400, "the uploaded file is empty")
        if len(data) > limit:
            raise ApiError(413, f"the file is over the limit of {limit:,} bytes "
                                f"({self.config.max_upload_mb:g} MB)")
        fmt_in = self._check_header(data, name)
        picture = self._decode(data)
        fmt = _FROM_PILLOW.get(fmt_in or "", "png") if want == "input" else "png"
        if fmt == "jpg" and picture.alpha is not None:
            fmt = "png"  # JPEG has no alpha
        scale = self.models.info[name].scale
        return Job(model=name, filename=f"{safe_stem(upload.filename)}_x{scale}.{fmt}",
                   mime=MIME[fmt], payload=picture)

    def _check_header(self, data: bytes, model: str) -> str | None:
        """The size from the header alone, refused before any pixel is decoded; returns
        Pillow's name of the format."""
        from PIL import Image, UnidentifiedImageError

        max_pixels = self.config.max_pixels
        try:
            with Image.open(BytesIO(data)) as im:
                (w, h), fmt_in = im.size, im.format
        except Image.DecompressionBombError:
            raise ApiError(413, f"over the limit of {max_pixels:,} pixels") from None
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
            raise ApiError(400, "not an image (or in a format this server cannot read)") from None
        if w * h > max_pixels:
            raise ApiError(413, f"{w}x{h} is {w * h:,} pixels, over the limit of {max_pixels:,}")
        problem = self.models.get(model).size_problem(w, h)
        if problem:
            raise ApiError(413, f"{w}x{h}: {problem}")
        return fmt_in

    def _decode(self, data: bytes):
        """The upload decoded as the command line decodes files (one reader), from a private
        temporary file with a random name, removed whatever happens."""

        fd, tmp = tempfile.mkstemp(dir=self.upload_dir, suffix=".upload")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            return load_image(Path(tmp), self.config.max_pixels)
        except SkippedImage as exc:
            raise ApiError(400, exc.reason) from None
        except ImageError as exc:  # the message would name the temporary file: reason only
            big = "bomb" in exc.reason or "pixels" in exc.reason
            raise ApiError(413 if big else 400, exc.reason) from None
        finally:
            Path(tmp).unlink(missing_ok=True)

    def submit(self, job: Job) -> Job:
        try:
            return self.queue.submit(job)
        except Stopping:
            raise ApiError(503, "the server is shutting down") from None
        except QueueFull:
            raise ApiError(429, f"busy: {self.queue.capacity} images are queued or running; "
                                "retry shortly", {"Retry-After": "5"}) from None


def create_app(config: ServeConfig | None = None, factory=None):
    """The Flask app. ``factory(path) -> Upscaler`` replaces how models are opened (tests)."""
    from flask import Flask

    config = config or ServeConfig()
    models = Models(config, factory)
    models.get(models.default)  # the first request should not pay for opening it
    upload_dir = tempfile.mkdtemp(prefix="srrun-serve-")
    app = Flask(__name__, static_folder=None)
    # An app made by a library user or a test is never stopped by serve(): its folder goes
    # with the app, or at exit.
    weakref.finalize(app, _remove_dir, upload_dir)
    app.config["MAX_CONTENT_LENGTH"] = config.body_limit  # waitress refuses larger first
    app.config["MAX_FORM_MEMORY_SIZE"] = FORM_MEMORY
    app.config["TRAP_HTTP_EXCEPTIONS"] = False
    service = _Service(config, models, upload_dir)
    app.extensions["srgan"] = {"models": models, "queue": service.queue,
                               "upload_dir": upload_dir}
    _add_headers_and_errors(app, config)
    _add_pages(app)
    _add_api(app, service)
    return app


def _add_headers_and_errors(app, config: ServeConfig) -> None:
    from flask import jsonify, request
    from werkzeug.exceptions import HTTPException

    @app.after_request
    def headers(resp):
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("Content-Security-Policy",
                                "default-src 'self'; img-src 'self' blob: data:; "
                                "style-src 'self'; script-src 'self'; frame-ancestors 'none'")
        resp.headers.setdefault("Referrer-Policy", "no-referrer")
        return resp

    @app.errorhandler(ApiError)
    def api_error(exc: ApiError):
        return jsonify(error=exc.message), exc.status, exc.headers

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        message = exc.description or exc.name
        if exc.code == 413:
            size = f" of {request.content_length:,} bytes" if request.content_length else ""
            message = (f"upload{size} over the limit of {config.body_limit:,} bytes (the "
                       f"file's {config.max_upload_mb:g} MB and the form around it)")
        return jsonify(error=message), exc.code or 500

    @app.errorhandler(Exception)
    def internal_error(exc: Exception):
        log.exception("internal error")
        return jsonify(error=f"internal error ({type(exc).__name__}); see the server log"), 500


def _add_pages(app) -> None:
    from flask import send_from_directory

    @app.get("/")
    def index():
        return send_from_directory(STATIC, "index.html")

    @app.get("/static/<path:name>")
    def static_file(name: str):
        if name not in ("app.js", "app.css", "icon.svg"):  # a fixed set, nothing else
            raise ApiError(404, "not found")
        return send_from_directory(STATIC, name)

    @app.get("/favicon.ico")
    def favicon():
        return send_from_directory(STATIC, "icon.svg", mimetype="image/svg+xml")


def _image_response(job: Job, download: bool):
    from flask import Response

    disposition = "attachment" if download else "inline"
    return Response(job.result, mimetype=job.mime, headers={
        "Content-Disposition": f'{disposition}; filename="{job.filename}"',
        "X-Job-Id": job.id, "Cache-Control": "no-store"})


def _add_api(app, service: _Service) -> None:
    from flask import jsonify, request

    config, models, queue = service.config, service.models, service.queue

    @app.get("/healthz")
    def healthz():
        return jsonify(status="ok", models=list(models.paths), active=queue.active,
                       capacity=queue.capacity)

    @app.get("/api/models")
    def api_models():
        return jsonify(models=models.listing(), max_upload_mb=config.max_upload_mb,
                       max_upload_bytes=config.max_upload_bytes, max_pixels=config.max_pixels)

    @app.post("/api/upscale")
    def api_upscale():
        from concurrent.futures import CancelledError
        from concurrent.futures import TimeoutError as Pending

        job = service.submit(service.accept(request))
        try:
            job.future.exception(timeout=config.wait_seconds)
        except CancelledError:
            raise ApiError(503, CANCELLED) from None
        except Pending:
            raise ApiError(503, f"still running after {config.wait_seconds:g} s; it goes on as "
                                f"job {job.id} (GET /api/jobs/{job.id})") from None
        if job.error:
            raise ApiError(job.status, job.error)
        return _image_response(job, download=request.args.get("download") == "1")

    @app.post("/api/jobs")
    def api_jobs():
        job = service.submit(service.accept(request))
        return jsonify(job.to_dict()), 202, {"Location": f"/api/jobs/{job.id}"}

    def known(job_id: str) -> Job:
        job = queue.get(job_id)
        if job is None:
            raise ApiError(404, "no such job (unknown, or its result expired)")
        return job

    @app.get("/api/jobs/<job_id>")
    def api_job(job_id: str):
        return jsonify(known(job_id).to_dict())

    @app.get("/api/jobs/<job_id>/result")
    def api_result(job_id: str):
        job = known(job_id)
        if job.state in ("queued", "running"):
            raise ApiError(409, f"not ready: {job.state}")
        if job.error or job.result is None:
            raise ApiError(job.status if job.error else 404, job.error or "no result")
        return _image_response(job, download=request.args.get("download") == "1")


def serve(config: ServeConfig, http: HttpConfig | None = None) -> int:
    """Run the app under waitress (a production WSGI server; never Flask's debug server) until
    Ctrl-C or SIGTERM (:mod:`srgan_runtime.serve.server`); returns the exit status."""

    http = http or HttpConfig()
    app = create_app(config)
    ext = app.extensions["srgan"]
    try:
        server = make_server(app, http, config.body_limit)
    except BaseException:
        ext["queue"].stop()
        _remove_dir(ext["upload_dir"])
        raise
    names = ", ".join(ext["models"].paths)
    log.info("serving %s on http://%s:%d/ (%d worker(s), queue %d, %d HTTP threads, uploads "
             "up to %g MB and %s pixels, %d connections, idle ones closed after %d s)", names,
             http.host, http.port, config.workers, config.queue, http.http_threads,
             config.max_upload_mb, f"{config.max_pixels:,}", server.adj.connection_limit,
             http.channel_timeout)
    return run_until_stopped(server, ext["queue"], ext["upload_dir"], http)


def _remove_dir(path: str) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


__all__ = ["ApiError", "HttpConfig", "ServeConfig", "create_app", "safe_stem", "serve"]
