"""Other projects' checkpoints through spandrel: each architecture, built small with random
weights and saved in its upstream project's own layout, is loaded, described, upscaled tiled and
whole in PyTorch, exported to ONNX (verified) and run in ONNX Runtime and OpenVINO.
Hostile files (a pickle that would run code, TorchScript) are refused without running."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
spandrel_missing = None
try:
    from srgan_runtime.core.foreign import import_spandrel

    import_spandrel()
except Exception as exc:
    spandrel_missing = str(exc)
pytestmark = pytest.mark.skipif(spandrel_missing is not None,
                                reason=f"spandrel not importable: {spandrel_missing}")

from foreign_models import CASES, Case  # noqa: E402

from srgan_runtime.core.errors import UserError  # noqa: E402
from srgan_runtime.core.metrics import psnr  # noqa: E402
from srgan_runtime.core.synth import texture  # noqa: E402

# Tiled output within this of the whole-image output, at the measured default overlap
# (srgan_runtime.radius's bound is 60 dB on its own probe images).
TILED_DB = 55.0
# OmniSR's grid attention mixes pixels a fraction of the image apart: no overlap is seamless.
NOT_SEAMLESS = {"omnisr"}


def _params(cases: list[Case]):
    return [pytest.param(c, id=c.name, marks=[pytest.mark.slow] if c.slow else [])
            for c in cases]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("foreign")
    out = {}
    for case in CASES:
        out[case.name] = folder / case.filename
        case.build(out[case.name])
    return out


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return texture(np.random.default_rng(5), 52, 68)


@pytest.mark.parametrize("case", _params(CASES))
def test_describe(case: Case, files: dict[str, Path]) -> None:
    from srgan_runtime.core.modelinfo import describe

    info = describe(files[case.name])
    assert (info.format, info.arch, info.scale) == ("checkpoint", case.arch, case.scale)
    assert info.channels == info.out_channels == case.channels
    assert ("fp16" in info.precisions) == case.fp16
    assert info.summary().startswith(f"x{case.scale} {case.arch}")


@pytest.mark.parametrize("case", _params(CASES))
def test_tiled_matches_whole_in_torch(case: Case, files: dict[str, Path],
                                      image: np.ndarray) -> None:
    from srgan_runtime.upscaler import Upscaler

    path = files[case.name]
    whole = Upscaler(path, backend="torch", tile=0).upscale(image)
    assert whole.shape == (image.shape[0] * case.scale, image.shape[1] * case.scale, 3)
    # No overlap is seamless for OmniSR: measuring that takes a minute (benchmarks/foreign.py
    # does); here a fixed overlap shows the size of the seams.
    overlap = 12 if case.name in NOT_SEAMLESS else None
    tiled_up = Upscaler(path, backend="torch", tile=40, overlap=overlap)
    tiled = tiled_up.upscale(image)
    db = psnr(tiled, whole)
    if case.name in NOT_SEAMLESS:
        assert 40 < db < TILED_DB, f"{case.name}: {db:.1f} dB"
    else:
        assert db >= TILED_DB, f"{case.name}: tiled vs whole {db:.1f} dB at overlap " \
                               f"{tiled_up.overlap}"


@pytest.mark.parametrize("case", _params(CASES))
def test_export_and_backend_parity(case: Case, files: dict[str, Path], image: np.ndarray,
                                   tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from srgan_export.onnx_export import OnnxExportOptions, export_onnx
    from srgan_runtime.core.modelinfo import describe
    from srgan_runtime.upscaler import Upscaler

    # The fixed tile that networks whose graph cannot stay dynamic fall back to: small here.
    monkeypatch.setattr("srgan_export.onnx_export.FOREIGN_STATIC_TILE", 64)
    out = tmp_path / "m.onnx"
    res = export_onnx(files[case.name], out, OnnxExportOptions(
        data_dir=tmp_path / "no-data", measure_radius=False))
    assert res.parity is not None and res.parity.passed
    info = describe(out)
    assert (info.arch, info.scale, info.channels) == (case.arch, case.scale, case.channels)
    # SwinIR and HAT branch on their input's size in Python: a fixed tile, said so
    assert info.dynamic == (case.arch not in ("SwinIR", "HAT"))
    if info.static is not None:
        # A fixed-tile export (window attention whose graph cannot stay dynamic): an image of
        # the tile's size, so that both sides see the same input (smaller ones are padded to
        # the tile, which moves a random network's border pixels a lot).
        _, h, w = info.static
        image = texture(np.random.default_rng(5), h, w)
    ref = Upscaler(files[case.name], backend="torch", tile=0).upscale(image)
    for backend in ("onnxruntime", "openvino"):
        got = Upscaler(out, backend=backend, tile=0).upscale(image)
        assert psnr(got, ref) >= 60.0, backend


def test_fp16_export_refused_where_the_architecture_has_none(files: dict[str, Path],
                                                            tmp_path: Path) -> None:
    from srgan_export.onnx_export import OnnxExportOptions, export_onnx

    with pytest.raises(UserError, match="does not compute correctly in fp16"):
        export_onnx(files["rcan"], tmp_path / "m.onnx", OnnxExportOptions(fp16=True))
    assert not (tmp_path / "m.onnx").exists()


def test_fp16_export_of_compact(files: dict[str, Path], tmp_path: Path) -> None:
    from srgan_export.onnx_export import OnnxExportOptions, export_onnx

    res = export_onnx(files["compact"], tmp_path / "m.onnx", OnnxExportOptions(
        fp16=True, data_dir=tmp_path / "no-data", measure_radius=False))
    assert res.parity.passed and res.info.precision == "fp16"


def test_torch_refuses_half_where_unsupported(files: dict[str, Path]) -> None:
    from srgan_runtime.backends import open_backend

    with pytest.raises(UserError, match="RCAN does not compute correctly in fp16"):
        open_backend(files["rcan"], "torch", "cuda", "fp16")


def test_measured_radius_is_cached_by_file_hash(files: dict[str, Path]) -> None:
    from srgan_runtime.backends import open_backend
    from srgan_runtime.core.files import file_sha256
    from srgan_runtime.radius import _cache_file, effective_radius

    backend = open_backend(files["compact"], "torch", "cpu", "fp32")
    radius = effective_radius(backend)
    assert radius is not None and 1 <= radius <= 8
    doc = json.loads(_cache_file(file_sha256(files["compact"])).read_text())
    assert doc["radius"] == radius


# --- hostile and unsupported files ------------------------------------------------------------

EVIL = """
import os, sys, torch
class Evil:
    def __reduce__(self):
        return (os.system, ("touch " + sys.argv[2],))
torch.save({"params": {"w": torch.zeros(1)}, "hook": Evil()}, sys.argv[1])
"""


def test_malicious_pickle_is_refused_without_running(tmp_path: Path) -> None:
    evil, marker = tmp_path / "evil.pth", tmp_path / "pwned"
    subprocess.run([sys.executable, "-c", EVIL, str(evil), str(marker)], check=True)
    assert not marker.exists()
    res = subprocess.run([sys.executable, "-m", "srgan_runtime.cli", "models", str(evil)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode != 0
    assert not marker.exists(), "unpickling ran the payload"
    assert "could run code; refused" in res.stderr
    assert "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_torchscript_is_refused(tmp_path: Path) -> None:
    import torch

    from srgan_runtime.core.modelinfo import describe

    path = tmp_path / "scripted.pt"
    torch.jit.script(torch.nn.Conv2d(3, 3, 3)).save(str(path))
    with pytest.raises(UserError, match="TorchScript"):
        describe(path)


def test_unknown_architecture_and_garbage(tmp_path: Path) -> None:
    import torch

    from srgan_runtime.core.modelinfo import describe

    odd = tmp_path / "odd.pth"
    torch.save({"foo.weight": torch.zeros(3, 3)}, odd)
    with pytest.raises(UserError, match="recognises no architecture"):
        describe(odd)
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises(UserError, match="not a readable PyTorch checkpoint"):
        describe(junk)
    notst = tmp_path / "x.safetensors"
    notst.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}")
    with pytest.raises(UserError, match="safetensors"):
        describe(notst)


def test_torchvision_stand_ins_are_removed_after_import() -> None:
    """spandrel imported; anything importing torchvision afterwards sees the real state."""
    code = ("import sys\nfrom srgan_runtime.core.foreign import import_spandrel\n"
            "import_spandrel()\nprint('torchvision' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True)
    try:
        import torchvision  # noqa: F401
        real = True
    except Exception:
        real = False
    assert res.stdout.strip() == str(real)


# --- the command line ---------------------------------------------------------------------------

def test_srrun_and_srexport_take_a_checkpoint(files: dict[str, Path], tmp_path: Path) -> None:
    from PIL import Image

    src = tmp_path / "in.png"
    Image.fromarray(texture(np.random.default_rng(2), 40, 56)).save(src)
    env = {**os.environ, "SR_DATA_DIR": str(tmp_path / "no-data")}
    model = str(files["compact"])
    run = subprocess.run([sys.executable, "-m", "srgan_runtime.cli", "upscale", str(src),
                          "-o", str(tmp_path / "out.png"), "--model", model],
                         capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stderr
    assert Image.open(tmp_path / "out.png").size == (56 * 4, 40 * 4)
    exp = subprocess.run([sys.executable, "-m", "srgan_export.cli", "onnx", model, "-o",
                          str(tmp_path / "c.onnx"), "--no-radius"],
                         capture_output=True, text=True, timeout=300, env=env)
    assert exp.returncode == 0, exp.stderr
    listing = subprocess.run([sys.executable, "-m", "srgan_runtime.cli", "models", model],
                             capture_output=True, text=True, timeout=120, env=env)
    assert "x4 Compact (16nf 4nc) checkpoint" in listing.stdout
