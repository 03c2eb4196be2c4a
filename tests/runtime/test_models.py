"""Bundled generators: lookup by name, and the shipped default model itself."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import srgan_runtime.core.modelinfo as models
from srgan_runtime.core.errors import UserError
from srgan_train.checkpoint import load_generator


def test_resolve_by_file_folder_and_name(tmp_path: Path, generator_file: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models, "MODEL_DIR", tmp_path / "models")
    with pytest.raises(UserError, match="none bundled"):
        models.resolve_generator("default")
    with pytest.raises(UserError, match="no bundled default"):
        models.default_model()
    (tmp_path / "models").mkdir()
    shutil.copy(generator_file, tmp_path / "models" / "default.safetensors")
    assert models.resolve_generator("default") == tmp_path / "models" / "default.safetensors"
    assert models.default_model().name == "default.safetensors"
    assert models.default_model(4).name == "default.safetensors"  # the tiny x4 file
    with pytest.raises(UserError, match="no bundled x2 model"):
        models.default_model(2)
    shutil.copy(generator_file, tmp_path / "models" / "other.safetensors")
    assert models.default_model(4).name == "default.safetensors"  # default first
    assert models.resolve_generator(generator_file) == generator_file
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(UserError, match=r"no generator\.safetensors"):
        models.resolve_generator(run)
    shutil.copy(generator_file, run / "generator.safetensors")
    assert models.resolve_generator(run) == run / "generator.safetensors"


def _srrun(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "srgan_runtime.cli", *args],
                          capture_output=True, text=True)


needs_default = pytest.mark.skipif("default" not in models.bundled_models(),
                                   reason="no default model bundled in this build")


@needs_default
def test_bundled_default_is_small_self_describing_and_works(tmp_path: Path) -> None:
    path = models.bundled_models()["default"]
    assert path.stat().st_size <= 10 * 2**20
    gf = load_generator(path)
    assert gf.scale == 4 and gf.step > 0
    from srgan_train.archs import build_generator, count_parameters
    from srgan_train.config import preset_config

    # Issue 6: no more parameters than SRResNet (the srresnet preset is its exact layout).
    srresnet = count_parameters(build_generator(preset_config("srresnet", 4)))
    assert count_parameters(gf.model) <= srresnet
    assert float(gf.metadata["val_psnr"]) >= 31.5  # Set5, recorded by srtrain fit
    img = np.random.default_rng(0).integers(0, 256, (21, 17, 3), dtype=np.uint8)
    Image.fromarray(img).save(tmp_path / "p.png")
    r = _srrun("upscale", str(tmp_path / "p.png"), "-o", str(tmp_path / "p_x4.png"),
               "--no-progress")
    assert r.returncode == 0, r.stderr
    with Image.open(tmp_path / "p_x4.png") as im:
        assert im.size == (68, 84)


needs_srgan = pytest.mark.skipif("srgan" not in models.bundled_models(),
                                 reason="no srgan model bundled in this build")


@needs_srgan
def test_bundled_gan_variant_is_a_gan_phase_x4_model_usable_by_name(tmp_path: Path) -> None:
    path = models.bundled_models()["srgan"]
    assert path.stat().st_size <= 10 * 2**20
    gf = load_generator(path)
    assert gf.scale == 4 and gf.metadata["phase"] == "gan"
    img = np.random.default_rng(1).integers(0, 256, (19, 23, 3), dtype=np.uint8)
    Image.fromarray(img).save(tmp_path / "p.png")
    r = _srrun("upscale", str(tmp_path / "p.png"), "-o", str(tmp_path / "g.png"), "--model",
               "srgan", "--no-progress")
    assert r.returncode == 0, r.stderr
    with Image.open(tmp_path / "g.png") as im:
        assert im.size == (92, 76)
    r = _srrun("models")
    assert r.returncode == 0 and "srgan: x4" in r.stdout and "gan phase" in r.stdout


needs_x2 = pytest.mark.skipif("x2" not in models.bundled_models(),
                              reason="no x2 model bundled in this build")



@needs_x2
@needs_default
def test_bundled_x2_is_picked_by_scale_and_mismatches_are_refused(tmp_path: Path) -> None:
    gf = load_generator(models.bundled_models()["x2"])
    assert gf.scale == 2 and models.bundled_models()["x2"].stat().st_size <= 10 * 2**20
    img = np.random.default_rng(2).integers(0, 256, (15, 22, 3), dtype=np.uint8)
    Image.fromarray(img).save(tmp_path / "p.png")
    r = _srrun("upscale", str(tmp_path / "p.png"), "-o", str(tmp_path / "two.png"),
               "--scale", "2", "--no-progress")
    assert r.returncode == 0, r.stderr
    with Image.open(tmp_path / "two.png") as im:
        assert im.size == (44, 30)
    r = _srrun("upscale", str(tmp_path / "p.png"), "-o", str(tmp_path / "bad.png"),
               "--scale", "2", "--model", "default", "--no-progress")
    assert r.returncode == 2 and "model is x4, --scale is 2" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "bad.png").exists()
    r = _srrun("upscale", str(tmp_path / "p.png"), "-o", str(tmp_path / "three.png"),
               "--scale", "3", "--no-progress")
    assert r.returncode == 2 and "no bundled x3 model" in r.stderr
    r = _srrun("models")
    assert r.returncode == 0 and "x2: x2" in r.stdout and "fast: x4" in r.stdout
