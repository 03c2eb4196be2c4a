"""`srrun serve`'s Flask app through Flask's test client: the page and its assets (no external
resource), the API's results and every error status, path traversal, the bounded queue, expiry
and temporary files."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("flask", reason="the [serve] extra (flask, waitress) is not installed")

from srgan_runtime.core.imageio import Picture
from srgan_runtime.serve.app import ServeConfig, create_app, safe_stem
from srgan_runtime.settings import UpscaleSettings
from srgan_runtime.upscaler import UpscaleStats


def _png(w: int = 24, h: int = 20, mode: str = "RGB", fmt: str = "PNG") -> bytes:
    rng = np.random.default_rng(w * h)
    arr = (rng.random((h, w, len(mode))) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr[..., 0] if mode == "L" else arr, mode).save(buf, fmt)
    return buf.getvalue()


def _post(client, data: bytes | None, name: str = "photo.png", url: str = "/api/upscale",
          **form):
    fields = dict(form)
    if data is not None:
        fields["image"] = (io.BytesIO(data), name)
    return client.post(url, data=fields, content_type="multipart/form-data")


@pytest.fixture(scope="module")
def app(generator_file: Path):
    settings = UpscaleSettings(backend="torch", device="cpu", tile=64,
                               max_output_pixels=64_000_000)
    return create_app(ServeConfig(models=(str(generator_file),), upscale=settings,
                                  max_upload_mb=0.25, max_pixels=20_000))


@pytest.fixture
def client(app):
    return app.test_client()


def test_page_and_assets_are_served_locally(client) -> None:
    page = client.get("/")
    assert page.status_code == 200 and b"<html" in page.data
    for url in ("/static/app.js", "/static/app.css"):
        asset = client.get(url)
        assert asset.status_code == 200
        assert b"http://" not in asset.data and b"https://" not in asset.data
    assert b"http://" not in page.data and b"https://" not in page.data
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    for bad in ("/static/../app.py", "/static/..%2fapp.py", "/static/index.html.bak",
                "/static/%2e%2e/jobs.py"):
        r = client.get(bad)
        assert r.status_code == 404 and r.is_json, bad


def test_models_and_health(client) -> None:
    models = client.get("/api/models").get_json()
    assert [m["scale"] for m in models["models"]] == [4] and models["models"][0]["default"]
    assert client.get("/healthz").get_json()["status"] == "ok"


def test_upscale_returns_the_image(client) -> None:
    r = _post(client, _png(24, 20), name="../../etc/pass wd.png")
    assert r.status_code == 200 and r.mimetype == "image/png"
    assert Image.open(io.BytesIO(r.data)).size == (96, 80)
    assert 'filename="pass_wd_x4.png"' in r.headers["Content-Disposition"]
    jpg = _post(client, _png(16, 16, fmt="JPEG"), name="a.jpg", format="input")
    assert jpg.status_code == 200 and jpg.mimetype == "image/jpeg"
    assert Image.open(io.BytesIO(jpg.data)).size == (64, 64)


@pytest.mark.parametrize(("data", "form", "status", "words"), [
    (None, {}, 400, "multipart field 'image'"),
    (b"", {}, 400, "empty"),
    (b"hello, not an image", {}, 400, "not an image"),
    (_png(24, 20)[:60], {}, 400, "truncated"),
    (_png(200, 150), {}, 413, "over the limit of 20,000"),
    (b"\0" * (300 << 10), {}, 413, "over the limit of 262,144 bytes (0.25 MB)"),
    (_png(), {"model": "../../etc/passwd"}, 400, "unknown model"),
    (_png(), {"format": "exe"}, 400, "png or input"),
])
def test_bad_requests_get_json_errors(client, data, form, status: int, words: str) -> None:
    r = _post(client, data, **form)
    assert r.status_code == status and r.is_json, r.data[:200]
    assert words in r.get_json()["error"]


def test_decompression_bomb_header_is_refused_before_decoding(client) -> None:
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(
            ">I", zlib.crc32(kind + body))

    bomb = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 60000, 60000, 8, 2,
                                                              0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b""))
    r = _post(client, bomb)
    assert r.status_code == 413 and "pixels" in r.get_json()["error"]


def test_animated_gif_is_a_clear_400(client) -> None:
    buf = io.BytesIO()
    frames = [Image.new("RGB", (8, 8), c) for c in ("red", "blue")]
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    r = _post(client, buf.getvalue(), name="a.gif")
    assert r.status_code == 400 and "animated" in r.get_json()["error"]


def test_jobs_progress_result_and_traversal(client, app) -> None:
    r = _post(client, _png(40, 30), url="/api/jobs")
    assert r.status_code == 202
    job = r.get_json()
    assert r.headers["Location"] == f"/api/jobs/{job['id']}"
    for _ in range(200):
        state = client.get(f"/api/jobs/{job['id']}").get_json()
        if state["state"] in ("done", "failed"):
            break
        time.sleep(0.05)
    assert state["state"] == "done" and state["done"] == state["total"] > 0
    assert (state["width"], state["height"]) == (160, 120)
    res = client.get(f"/api/jobs/{job['id']}/result?download=1")
    assert res.status_code == 200 and "attachment" in res.headers["Content-Disposition"]
    for bad in ("../../etc/passwd", "..%2f..%2fetc%2fpasswd", "x" * 22, "A" * 500):
        r = client.get(f"/api/jobs/{bad}")
        assert r.status_code == 404 and r.is_json, bad
        assert client.get(f"/api/jobs/{bad}/result").status_code == 404
    assert list(Path(app.extensions["srgan"]["upload_dir"]).iterdir()) == []  # no leftovers


class _Gate:
    """A stand-in upscaler that waits for the test to let it finish."""

    scale = 4

    def __init__(self, fail: bool = False) -> None:
        self.release, self.fail = threading.Event(), fail

    def size_problem(self, w: int, h: int) -> None:
        return None

    def upscale_many(self, items, on_tile=None):
        ((key, pic),) = list(items)
        self.release.wait(10)
        if self.fail:
            raise RuntimeError("a bug")
        on_tile(key, 1, 1)
        arr = np.repeat(np.repeat(pic.to_array(), 4, 0), 4, 1)
        yield key, Picture.from_array(arr), UpscaleStats()


def test_queue_is_bounded_and_errors_are_never_500_for_input(generator_file: Path) -> None:
    gate = _Gate()
    app = create_app(ServeConfig(models=(str(generator_file),), queue=2, workers=1,
                                 result_ttl=600, max_result_mb=1), factory=lambda p: gate)
    client = app.test_client()
    first = [_post(client, _png(), url="/api/jobs") for _ in range(2)]
    assert [r.status_code for r in first] == [202, 202]
    busy = _post(client, _png(), url="/api/jobs")
    assert busy.status_code == 429 and busy.headers["Retry-After"] == "5"
    assert "busy" in busy.get_json()["error"]
    assert _post(client, _png(), url="/api/upscale").status_code == 429
    pending = client.get(f"/api/jobs/{first[0].get_json()['id']}/result")
    assert pending.status_code == 409
    gate.release.set()
    queue = app.extensions["srgan"]["queue"]
    for r in first:
        queue.get(r.get_json()["id"]).future.result(10)
    assert queue.active == 0
    assert _post(client, _png(), url="/api/jobs").status_code == 202


def test_a_slow_synchronous_request_is_a_503_with_its_job(generator_file: Path) -> None:
    gate = _Gate()
    app = create_app(ServeConfig(models=(str(generator_file),), wait_seconds=0.2),
                     factory=lambda p: gate)
    client = app.test_client()
    r = _post(client, _png())
    assert r.status_code == 503 and "GET /api/jobs/" in r.get_json()["error"]
    job_id = r.get_json()["error"].split("GET /api/jobs/")[1].rstrip(")")
    gate.release.set()
    app.extensions["srgan"]["queue"].get(job_id).future.result(10)
    assert client.get(f"/api/jobs/{job_id}/result").status_code == 200


def test_a_server_fault_is_a_500_json(generator_file: Path) -> None:
    gate = _Gate(fail=True)
    gate.release.set()
    app = create_app(ServeConfig(models=(str(generator_file),)), factory=lambda p: gate)
    r = _post(app.test_client(), _png())
    assert r.status_code == 500 and "internal error" in r.get_json()["error"]


def test_results_expire_and_are_size_capped() -> None:
    from srgan_runtime.serve.jobs import Job, JobQueue

    def run(job: Job) -> None:
        job.result = b"x" * 600

    q = JobQueue(run, capacity=10, ttl=600, max_result_bytes=1000)
    jobs = [q.submit(Job("m", "a.png", "image/png")) for _ in range(3)]
    for j in jobs:
        j.future.result(5)
    assert q.get(jobs[0].id) is None and q.get(jobs[2].id) is not None  # oldest evicted
    q.ttl = 0
    time.sleep(0.01)
    assert q.get(jobs[2].id) is None  # expired


def test_safe_stem() -> None:
    assert safe_stem("../../etc/passwd") == "passwd"
    assert safe_stem("C:\\Users\\x\\My Photo.JPG") == "My_Photo"
    assert safe_stem(None) == safe_stem("") == safe_stem("...") == "image"
    assert len(safe_stem("a" * 500 + ".png")) == 60
