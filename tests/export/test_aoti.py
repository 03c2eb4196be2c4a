"""AOTInductor packages on the CPU: `srexport aoti` compiles, verifies and describes one; the
`aoti` backend runs it with the upscaler (full tiles only) in parity with eager PyTorch; and
packages that do not fit this machine, or are not packages, are refused in one line."""

from __future__ import annotations

import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from srgan_runtime import Upscaler
from srgan_runtime.backends import open_backend
from srgan_runtime.core.errors import UserError
from srgan_runtime.core.metrics import psnr
from srgan_runtime.core.modelinfo import describe


@pytest.fixture(scope="module")
def package(generator_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from srgan_export.aoti import AotiOptions, export_aoti

    mp = pytest.MonkeyPatch()
    mp.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path_factory.mktemp("inductor")))
    out = tmp_path_factory.mktemp("aoti") / "tiny.pt2"
    _, report = export_aoti(generator_file, out, AotiOptions(tile=32, batch=2))
    mp.undo()
    assert report.passed and report.worst_psnr >= 60, report.lines()
    return out


def test_package_is_described_without_loading_it(package: Path) -> None:
    info = describe(package)
    assert info.format == "aoti" and info.static == (2, 32, 32) and info.precision == "fp32"
    assert info.extra["device"] == "cpu" and info.extra["AOTI_CPU_ISA"]
    assert info.scale == 4 and info.preset == "tiny"


def test_package_upscales_like_eager_pytorch(package: Path, generator_file: Path) -> None:
    img = (np.random.default_rng(2).random((45, 61, 3)) * 255).astype(np.uint8)
    up = Upscaler(package, overlap=4, cache=False)  # backend, device, precision: auto
    assert up.backend.name == "aoti" and (up.tile, up.batch) == (32, 2)
    eager = open_backend(generator_file, "torch", "cpu", "fp32")
    eager._fixed = (2, 32, 32)  # the same tiling, computed eagerly
    assert psnr(up.upscale(img), Upscaler(backend=eager, overlap=4, cache=False).upscale(img)) > 60


def test_packages_that_do_not_fit_are_refused(package: Path, tmp_path: Path) -> None:
    from srgan_runtime.backends.aoti import check_package

    info = describe(package)
    with pytest.raises(UserError, match="compiled in fp32, bf16 was asked for"):
        check_package(info, "cpu", "bf16")
    with pytest.raises(UserError, match="compiled for cpu, --device is cuda"):
        check_package(info, "cuda", None)
    other = replace(info, extra={**info.extra, "AOTI_CPU_ISA": "AVX512_ISA_THAT_IS_NOT_HERE"})
    with pytest.raises(UserError, match="CPUs, this one runs"):
        check_package(other, "cpu", None)
    old = replace(info, extra={**info.extra, "torch_version": "1.13.1"})
    with pytest.raises(UserError, match=r"compiled with torch 1\.13\.1"):
        check_package(old, "cpu", None)
    with pytest.raises(UserError, match="no fast fp16 on the CPU"):
        open_backend(package, "aoti", "cpu", "fp16")
    junk = tmp_path / "junk.pt2"
    junk.write_bytes(b"\x00" * 100)
    with pytest.raises(UserError, match="not a readable AOTInductor package"):
        describe(junk)
    with zipfile.ZipFile(tmp_path / "empty.pt2", "w") as z:
        z.writestr("m/archive_format", "pt2")
    with pytest.raises(UserError, match="not an AOTInductor package"):
        describe(tmp_path / "empty.pt2")


def test_export_refusals(generator_file: Path, tmp_path: Path) -> None:
    from srgan_export.aoti import AotiOptions, export_aoti

    with pytest.raises(UserError, match=r"\.pt2 file"):
        export_aoti(generator_file, tmp_path / "x.bin")
    with pytest.raises(UserError, match="fp16 on the CPU"):
        export_aoti(generator_file, tmp_path / "x.pt2", AotiOptions(precision="fp16"))
    with pytest.raises(UserError, match="--tile"):
        export_aoti(generator_file, tmp_path / "x.pt2", AotiOptions(tile=4))
    assert not list(tmp_path.iterdir())
