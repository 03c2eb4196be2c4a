"""Shared fixtures: the image sets (skipped with a reason where absent) and small inputs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def data_root() -> Path:
    """``SR_DATA_DIR`` or ``../shared/data`` beside the repository."""
    return Path(os.environ.get("SR_DATA_DIR", REPO.parent / "shared" / "data")).resolve()


def image_set(name: str) -> Path:
    path = data_root() / name
    if not (path / "HR").is_dir():
        pytest.skip(f"image set {name} not found at {path} (set SR_DATA_DIR to the shared data)")
    return path


@pytest.fixture
def set5() -> Path:
    return image_set("Set5")


@pytest.fixture
def t91() -> Path:
    return image_set("T91")


@pytest.fixture
def textures(tmp_path: Path) -> Path:
    """A flat folder of 6 procedural 96x128 images."""
    from srgan_train.synth import write_textures

    folder = tmp_path / "tex"
    write_textures(folder, 6, (96, 128), seed=1)
    return folder


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
