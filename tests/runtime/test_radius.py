"""The effective radius: measured on the model, cached by file hash, the default overlap."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

import srgan_runtime.radius as radius
from srgan_runtime import Upscaler
from srgan_runtime.backends import Backend
from srgan_runtime.core.errors import UserError
from srgan_runtime.core.modelinfo import ModelInfo


class BoxBackend(Backend):
    """x2 nearest upscaling of a (2r+1)^2 box blur with zero padding: every output pixel
    depends on exactly the inputs within ``r``, so the effective radius is ``r``."""

    name = "box"

    def __init__(self, r: int, theoretical: int | None, path: str = "") -> None:
        super().__init__(ModelInfo(scale=2, receptive_radius=theoretical, path=path), "fp32",
                         "cpu")
        self.r = r

    def _run(self, batch: np.ndarray) -> np.ndarray:
        r = self.r
        p = np.pad(batch, ((0, 0), (0, 0), (r, r), (r, r)))
        h, w = batch.shape[2:]
        acc = np.zeros_like(batch, dtype=np.float64)
        for dy in range(2 * r + 1):
            for dx in range(2 * r + 1):
                acc += p[:, :, dy:dy + h, dx:dx + w]
        y = (acc / (2 * r + 1) ** 2).astype(np.float32)
        return y.repeat(2, axis=2).repeat(2, axis=3)


@pytest.mark.parametrize("r", [3, 6])
def test_measurement_finds_the_true_context(r: int) -> None:
    got = radius.measure_effective_radius(BoxBackend(r, theoretical=20), limit=20)
    # The first candidate at or beyond r: below it the tiles lack real context.
    assert got.radius == min(c for c in radius.CANDIDATES if c >= r)
    for o, db, lv in got.trials:  # every overlap tried below it failed, at or above it passed
        assert (db >= radius.MIN_DB and lv <= radius.MAX_LEVELS) == (o >= got.radius)
    assert "effective radius" in got.line()
    # Bounded: a timing pass, two whole images, then doubling and bisection (not one pass per
    # candidate, nor one per tile of a tiled image).
    assert got.passes <= 3 + len(got.trials) and len(got.trials) <= 6


def test_nothing_within_the_limit_is_reported_as_none() -> None:
    got = radius.measure_effective_radius(BoxBackend(12, theoretical=6), limit=6)
    assert got.radius is None and got.limit == 6 and "no overlap up to 6" in got.line()


def test_measured_once_then_cached_by_file_hash(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    model = tmp_path / "box.onnx"
    model.write_bytes(b"any bytes: the cache key is their hash")
    assert radius.effective_radius(BoxBackend(3, 20, str(model))) == 4
    cached = list((radius.user_cache_dir("radius")).glob("*.json"))
    assert len(cached) == 1 and json.loads(cached[0].read_text())["radius"] == 4

    def fail(*a, **k):
        raise AssertionError("measured twice")

    monkeypatch.setattr(radius, "measure_effective_radius", fail)
    assert radius.effective_radius(BoxBackend(3, 20, str(model))) == 4
    cached[0].write_text("{broken")  # a corrupt entry is measured again, not trusted
    with pytest.raises(AssertionError, match="measured twice"):
        radius.effective_radius(BoxBackend(3, 20, str(model)))
    # Stored metadata wins over everything.
    b = BoxBackend(3, 20, str(model))
    b.info = ModelInfo(scale=2, receptive_radius=20, effective_radius=7, path=str(model))
    assert radius.effective_radius(b) == 7


def test_default_overlap_seamless_and_small_tiles(tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    model = tmp_path / "box.onnx"
    model.write_bytes(b"box")
    up = Upscaler(backend=BoxBackend(3, 20, str(model)), tile=64)
    assert up.overlap == 4  # measured, not the theoretical 20
    assert Upscaler(backend=BoxBackend(3, 20, str(model)), tile=64, seamless=True).overlap == 20
    assert Upscaler(backend=BoxBackend(3, 20, str(model)), tile=0).overlap == 20  # no tiling
    with caplog.at_level(logging.WARNING):
        small = Upscaler(backend=BoxBackend(3, 20, str(model)), tile=32, seamless=True)
    assert small.overlap == 8 and "overlap 8 instead" in caplog.text
    with pytest.raises(UserError, match="leaves no core"):
        Upscaler(backend=BoxBackend(3, 20, str(model)), tile=32, overlap=16)
    img = np.random.default_rng(0).integers(0, 256, (90, 70, 3), dtype=np.uint8)
    whole = Upscaler(backend=BoxBackend(3, 20, str(model)), tile=0).upscale(img)
    assert np.abs(up.upscale(img).astype(int) - whole).max() <= radius.MAX_LEVELS


class SlowBox(BoxBackend):
    """A box model that takes ``delay`` seconds a call: a network too slow for the budget."""

    def __init__(self, delay: float, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.delay, self.calls = delay, 0

    def _run(self, batch: np.ndarray) -> np.ndarray:
        import time

        self.calls += 1
        time.sleep(self.delay)
        return super()._run(batch)


def test_a_slow_network_stops_at_the_time_budget_and_is_not_retried(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    model = tmp_path / "slow.onnx"
    model.write_bytes(b"slow")
    slow = SlowBox(0.4, 3, None, str(model))  # no theoretical radius: up to 128
    got = radius.measure_effective_radius(slow, None, budget=1.0)
    assert got.timed_out and got.radius is None and got.seconds < 2.5
    assert "not measured within 1 s" in got.line()
    with caplog.at_level(logging.WARNING):
        up = Upscaler(backend=SlowBox(0.4, 3, None, str(model)), tile=128)
        monkeypatch.setenv("SRGAN_RADIUS_SECONDS", "1")
        assert up.overlap == 32  # the fixed guess, said in a warning
    assert "not measured within 1 s" in caplog.text and "may show seams" in caplog.text
    again = SlowBox(0.4, 3, None, str(model))  # the same budget: the cache says it timed out
    assert radius.effective_radius(again, budget=1.0) is None and again.calls == 0
    patient = BoxBackend(3, None, str(model))  # a larger budget measures again
    assert radius.effective_radius(patient, budget=60.0) == 4


def test_the_radius_is_measured_only_when_an_image_needs_tiles(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    model = tmp_path / "box.onnx"
    model.write_bytes(b"lazy box")
    backend = SlowBox(0.0, 3, 20, str(model))
    up = Upscaler(backend=backend, tile=64)
    assert up.profile.overlap is None and "measured when an image needs tiles" in up.describe()
    small = np.random.default_rng(0).integers(0, 256, (60, 50, 3), dtype=np.uint8)
    up.upscale(small)
    assert up.profile.overlap is None and backend.calls == 1  # one tile, no measurement
    big = np.random.default_rng(1).integers(0, 256, (100, 90, 3), dtype=np.uint8)
    up.upscale(big)
    assert up.profile.overlap == 4
    given = SlowBox(0.0, 3, 20, str(tmp_path / "other.onnx"))
    assert Upscaler(backend=given, tile=64, overlap=6).upscale(big) is not None
    assert given.calls == 4  # the tiles only: --overlap skips the measurement
