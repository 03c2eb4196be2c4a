"""Generator files (safetensors + metadata) and training checkpoints: round trip, bad files."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from srgan_runtime.core import __version__
from srgan_runtime.core.errors import UserError
from srgan_runtime.core.generator import read_generator_metadata
from srgan_train.archs import build_generator
from srgan_train.checkpoint import (
    load_generator,
    load_training_state,
    save_generator,
    save_training_state,
)
from srgan_train.config import preset_config


def test_generator_round_trip_is_self_describing(tmp_path: Path) -> None:
    torch.manual_seed(0)
    g = build_generator(preset_config("seed")).eval()
    path = tmp_path / "g.safetensors"
    save_generator(g, path, preset="seed", step=123, extra={"val_psnr": "30.1"})
    meta = read_generator_metadata(path)
    assert meta["preset"] == "seed" and meta["scale"] == "2" and meta["step"] == "123"
    assert meta["channels"] == "64" and meta["blocks"] == "8" and meta["block"] == "bottleneck"
    assert meta["value_range"] == "0-1" and meta["colour_order"] == "RGB"
    assert meta["toolkit_version"] == __version__ and meta["val_psnr"] == "30.1"
    gf = load_generator(path)
    assert gf.config == g.config and gf.step == 123 and not gf.model.training
    x = torch.rand(1, 3, 9, 11)
    with torch.no_grad():
        assert torch.equal(gf.model(x), g(x))
    assert not list(tmp_path.glob(".*tmp"))  # atomic write left no temp file


def test_foreign_and_corrupt_generator_files(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(UserError, match="not a generator file of this toolkit"):
        load_generator(foreign)
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x00" * 100)
    with pytest.raises(UserError, match="not a readable safetensors"):
        load_generator(corrupt)
    with pytest.raises(UserError, match="no such generator file"):
        load_generator(tmp_path / "missing.safetensors")
    # Right metadata, wrong tensors.
    good = tmp_path / "good.safetensors"
    save_generator(build_generator(preset_config("tiny")), good, preset="tiny", step=0)
    from safetensors import safe_open

    with safe_open(str(good), framework="pt") as f:
        meta = f.metadata()
    wrong = tmp_path / "wrong.safetensors"
    save_file({"head.0.weight": torch.zeros(1)}, str(wrong), metadata=meta)
    with pytest.raises(UserError, match="do not match the stored config"):
        load_generator(wrong)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[:-1000])
    with pytest.raises(UserError):
        load_generator(truncated)


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_training_state_never_unpickles_objects(tmp_path: Path) -> None:
    ok = tmp_path / "ok.pt"
    save_training_state({"format": "srgan-toolkit/train-state", "step": 3,
                         "w": torch.ones(2)}, ok)
    assert load_training_state(ok)["step"] == 3
    evil = tmp_path / "evil.pt"
    torch.save({"format": "srgan-toolkit/train-state", "x": _Evil()}, evil)
    with pytest.raises(UserError, match="never unpickles"):
        load_training_state(evil)
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(UserError):
        load_training_state(raw)
    other = tmp_path / "other.pt"
    torch.save({"model": torch.ones(1)}, other)
    with pytest.raises(UserError, match="not a training checkpoint"):
        load_training_state(other)
