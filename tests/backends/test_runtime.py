"""Runtime: backends' parity with PyTorch, tiled vs whole, batching, image fidelity, numerical
safety, out-of-memory, threads. Real images come from the shared Set5/Set14 LR X4 sets."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import data_root, image_set
from PIL import Image

from srgan_export import OnnxExportOptions, export_onnx
from srgan_export.parity import Gate, compare_outputs
from srgan_runtime import Upscaler, describe, load_image, open_backend, save_image
from srgan_runtime.backends import Backend, Output, installed, quantize
from srgan_runtime.backends.support import support_table, supported
from srgan_runtime.core.errors import UserError
from srgan_runtime.core.imageio import Picture, to_nchw
from srgan_runtime.core.metrics import psnr
from srgan_runtime.core.modelinfo import ModelInfo
from srgan_runtime.tiling import plan_tiles, seam_score


def _lr_images(name: str, limit: int | None = None) -> list[tuple[str, np.ndarray]]:
    folder = image_set(name) / "LR_bicubic" / "X4"
    from srgan_runtime.core.files import list_images
    from srgan_runtime.core.imageio import load_rgb

    files = list_images(folder)[:limit]
    return [(p.stem, load_rgb(p)) for p in files]


@pytest.fixture(scope="module")
def onnx_files(generator_file: Path, tmp_path_factory: pytest.TempPathFactory):
    d = tmp_path_factory.mktemp("rt")
    fp32 = export_onnx(generator_file, d / "m.onnx", OnnxExportOptions(data_dir=data_root()))
    fp16 = export_onnx(generator_file, d / "h.onnx",
                       OnnxExportOptions(fp16=True, data_dir=data_root()))
    int8 = export_onnx(generator_file, d / "q.onnx",
                       OnnxExportOptions(int8=True, calibration=_calibration_folder(d),
                                         data_dir=data_root()))
    return fp32.path, fp16.path, int8.path


def _calibration_folder(d: Path) -> Path:
    """Training-like images for INT8 calibration: T91 where the shared data is, else
    generated textures (never the evaluation sets the parity test reads)."""
    t91 = data_root() / "T91" / "HR"
    if t91.is_dir():
        return t91
    from srgan_runtime.core.synth import texture

    folder = d / "calib"
    folder.mkdir()
    rng = np.random.default_rng(3)
    for i in range(8):
        Image.fromarray(texture(rng, 192, 256)).save(folder / f"t{i}.png")
    return folder


def _engines(generator_file: Path, onnx_files) -> dict[str, Path]:
    return {"generator": generator_file, "onnx": onnx_files[0], "onnx-fp16": onnx_files[1],
            "onnx-int8": onnx_files[2]}


def _chw(img: np.ndarray) -> np.ndarray:
    return to_nchw(img)


# Every CPU combination the support table allows (TensorRT is CUDA-only).
BACKENDS = [(r.backend, r.precision, r.kind) for r in supported(device="cpu")
            if r.kind != "aoti"]  # fixed-shape packages: tests/export/test_aoti.py


@pytest.mark.data
@pytest.mark.parametrize(("backend", "precision", "kind"), BACKENDS)
@pytest.mark.parametrize("image_set_name", ["Set5", "Set14"])
def test_backend_parity_with_pytorch(generator_file: Path, onnx_files, backend: str,
                                     precision: str, kind: str, image_set_name: str) -> None:
    if backend == "openvino":
        pytest.importorskip("openvino", reason="openvino extra not installed")
    engine = _engines(generator_file, onnx_files)[kind]
    ref = open_backend(generator_file, "torch", "cpu", "fp32")
    cand = open_backend(engine, backend, "cpu", precision)
    gate = Gate.for_precision(precision)
    worst = (float("inf"), 1.0)
    for name, img in _lr_images(image_set_name):
        x = _chw(img)
        case = compare_outputs(name, ref.run_float(x).astype(np.float64), cand.run_float(x))
        assert case.finite
        assert case.psnr >= gate.min_psnr, (name, case)
        if gate.min_ssim:
            assert case.ssim >= gate.min_ssim, (name, case)
        worst = (min(worst[0], case.psnr), min(worst[1], case.ssim or 1.0))
    print(f"{backend} {precision} on {image_set_name}: worst {worst[0]:.2f} dB, "
          f"SSIM {worst[1]:.6f}")


@pytest.mark.data
@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_tiled_equals_whole_image_with_defaults(generator_file: Path, onnx_files,
                                                backend: str) -> None:
    """--seamless (overlap = theoretical radius) and the default (the measured effective
    radius) against the whole image, on real images the measurement never saw."""
    engine = generator_file if backend == "torch" else onnx_files[0]
    whole = Upscaler(engine, backend=backend, device="cpu", tile=0)
    exact = Upscaler(engine, backend=backend, device="cpu", tile=48, batch=3, seamless=True)
    tiled = Upscaler(engine, backend=backend, device="cpu", tile=48, batch=3)
    assert exact.overlap == whole.backend.receptive_radius > tiled.overlap > 0
    for name, img in _lr_images("Set14", 4):
        a = whole.upscale(img)
        for label, up in (("seamless", exact), ("default", tiled)):
            b = up.upscale(img)
            tiles = plan_tiles(img.shape[0], img.shape[1], 48, up.overlap, even=True)
            assert len(tiles) > 1
            p = psnr(a, b)
            levels = int(np.abs(a.astype(int) - b).max())
            score = seam_score(b, a, tiles, 4)
            print(f"{name} {label} overlap {up.overlap}: tiled vs whole {p:.2f} dB, max "
                  f"{levels} level(s), seam score {score:.3f}")
            assert p >= (70 if label == "seamless" else 55)
            assert levels <= (1 if label == "seamless" else 3)


def test_small_overlap_shows_seams(generator_file: Path, textures: Path) -> None:
    img = load_image(next(textures.iterdir())).colour
    whole = Upscaler(generator_file, backend="torch", device="cpu", tile=0).upscale(img)
    cheap = Upscaler(generator_file, backend="torch", device="cpu", tile=32, overlap=0)
    out = cheap.upscale(img)
    tiles = plan_tiles(img.shape[0], img.shape[1], 32, 0)
    assert seam_score(out, whole, tiles, 4) > 2  # the score does detect seams


def test_batched_equals_one_by_one_and_across_images(generator_file: Path,
                                                     textures: Path) -> None:
    imgs = [load_image(p) for p in sorted(textures.iterdir())[:3]]
    one = Upscaler(generator_file, backend="torch", device="cpu", tile=40, overlap=8, batch=1)
    many = Upscaler(generator_file, backend="torch", device="cpu", tile=40, overlap=8, batch=5)
    singles = [one.upscale_picture(p).colour for p in imgs]
    packed = [r.colour for _, r, _ in many.upscale_many(enumerate(imgs))]
    for a, b in zip(singles, packed, strict=True):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("shape", [(1, 1), (7, 5), (33, 17), (50, 129)])
def test_odd_sizes_exact_output_size(generator_file: Path, shape) -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    up = Upscaler(generator_file, backend="torch", device="cpu", tile=32, overlap=6)
    out = up.upscale(img)
    assert out.shape == (shape[0] * 4, shape[1] * 4, 3) and out.dtype == np.uint8
    assert up.upscale(Image.fromarray(img)).size == (shape[1] * 4, shape[0] * 4)


def test_static_onnx_pads_small_images(generator_file: Path, tmp_path: Path) -> None:
    res = export_onnx(generator_file, tmp_path / "s.onnx",
                      OnnxExportOptions(static=(2, 32, 32), data_dir=data_root()))
    up = Upscaler(res.path, backend="onnxruntime", device="cpu", overlap=6)
    assert (up.tile, up.batch) == (32, 2)
    img = np.random.default_rng(1).integers(0, 256, (20, 45, 3), dtype=np.uint8)
    out = up.upscale(img)
    assert out.shape == (80, 180, 3)


def test_rgba_grey_palette_and_16bit(generator_file: Path) -> None:
    rng = np.random.default_rng(2)
    up = Upscaler(generator_file, backend="torch", device="cpu", tile=0)
    rgba = rng.integers(0, 256, (12, 10, 4), dtype=np.uint8)
    out = up.upscale(rgba)
    assert out.shape == (48, 40, 4)
    alpha = np.asarray(Image.fromarray(rgba[..., 3]).resize((40, 48), Image.Resampling.BICUBIC))
    assert np.abs(out[..., 3].astype(int) - alpha).max() <= 1  # bicubic alpha
    grey = rng.integers(0, 256, (12, 10), dtype=np.uint8)
    assert up.upscale(grey).shape == (48, 40)
    g16 = (rng.integers(0, 65536, (12, 10), dtype=np.uint16))
    o16 = up.upscale(g16)
    assert o16.dtype == np.uint16 and o16.shape == (48, 40)
    assert len(np.unique(o16 & 0xFF)) > 16  # real 16-bit detail, not 8-bit times 257
    rgb16 = rng.integers(0, 65536, (12, 10, 3), dtype=np.uint16)
    assert up.upscale(rgb16).dtype == np.uint16
    pal = Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)).convert(
        "P", palette=Image.Palette.ADAPTIVE)
    assert up.upscale(pal).size == (40, 48)
    model_alpha = Upscaler(generator_file, backend="torch", device="cpu", tile=0, alpha="model")
    assert model_alpha.upscale(rgba).shape == (48, 40, 4)


def test_files_keep_16bit_icc_exif_and_orientation(generator_file: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    up = Upscaler(generator_file, backend="torch", device="cpu", tile=0)
    # 16-bit RGB PNG (through pypng) stays 16-bit.
    pic16 = Picture(rng.integers(0, 65536, (9, 7, 3), dtype=np.uint16))
    save_image(pic16, tmp_path / "c16.png")
    back = load_image(tmp_path / "c16.png")
    assert back.bits == 16 and np.array_equal(back.colour, pic16.colour)
    out = up.upscale_picture(back)
    save_image(out, tmp_path / "c16_x4.png")
    assert load_image(tmp_path / "c16_x4.png").colour.shape == (36, 28, 3)
    # EXIF orientation applied, ICC and EXIF copied.
    im = Image.fromarray(rng.integers(0, 256, (10, 6, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    exif[0x010F] = "TestCam"
    icc = b"\x00" * 128  # opaque bytes are carried as they are
    im.save(tmp_path / "o.jpg", exif=exif.tobytes(), icc_profile=icc, quality=95)
    pic = load_image(tmp_path / "o.jpg")
    assert (pic.width, pic.height) == (10, 6)  # upright
    out = up.upscale_picture(pic)
    save_image(out, tmp_path / "o_x4.jpg")
    with Image.open(tmp_path / "o_x4.jpg") as res:
        assert res.size == (40, 24)
        assert res.info.get("icc_profile") == icc
        e = res.getexif()
        assert e.get(0x010F) == "TestCam" and e.get(0x0112, 1) == 1


def test_outscale_gives_exact_size(generator_file: Path) -> None:
    up = Upscaler(generator_file, backend="torch", device="cpu", tile=0, outscale=3.5)
    img = np.zeros((10, 7, 3), np.uint8)
    assert up.upscale(img).shape == (35, 24, 3)


class _FlakyBackend(Backend):
    """bf16 backend whose second tile comes out NaN; its fp32 fallback is exact."""

    name = "flaky"

    def __init__(self, precision: str = "bf16", oom_above: int | None = None) -> None:
        super().__init__(ModelInfo(scale=2, receptive_radius=0), precision, "cpu")
        self.calls = 0
        self.oom_above = oom_above

    def _run(self, batch: np.ndarray) -> np.ndarray:
        if self.oom_above is not None and batch.shape[-1] * batch.shape[0] > self.oom_above:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        self.calls += 1
        y = batch.repeat(2, axis=2).repeat(2, axis=3)
        if self.precision == "bf16" and self.calls == 2:
            y = y.copy()
            y[0, 0, 0, 0] = np.nan
        return y

    def fp32_fallback(self) -> Backend | None:
        return _FlakyBackend("fp32")


def test_nan_tile_is_recomputed_in_fp32(caplog: pytest.LogCaptureFixture) -> None:
    img = np.random.default_rng(4).integers(0, 256, (16, 40, 3), dtype=np.uint8)
    up = Upscaler(backend=_FlakyBackend(), tile=16, overlap=2, batch=1)
    ((_, out, stats),) = list(up.upscale_many([(0, Picture(img))]))
    assert stats.fp32_tiles == 1 and "recomputed in fp32" in stats.warnings[0]
    assert np.array_equal(out.colour, img.repeat(2, 0).repeat(2, 1))


def test_out_of_memory_halves_batch_then_tile() -> None:
    img = np.random.default_rng(5).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    up = Upscaler(backend=_FlakyBackend("fp32", oom_above=40), tile=64, overlap=4, batch=4)
    ((_, out, stats),) = list(up.upscale_many([(0, Picture(img))]))
    assert up.tile == 32 and stats.oom_retries >= 1
    assert any("tile halved" in w for w in stats.warnings)
    assert np.array_equal(out.colour, img.repeat(2, 0).repeat(2, 1))


def test_threads_share_one_upscaler(generator_file: Path) -> None:
    up = Upscaler(generator_file, backend="torch", device="cpu", tile=24, overlap=6, batch=2)
    rng = np.random.default_rng(6)
    imgs = [rng.integers(0, 256, (30 + i, 26, 3), dtype=np.uint8) for i in range(4)]
    expected = [up.upscale(im) for im in imgs]
    got: dict[int, np.ndarray] = {}

    def work(i: int) -> None:
        got[i] = up.upscale(imgs[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(np.array_equal(got[i], expected[i]) for i in range(4))


def test_quantize_rounds_and_flags_non_finite() -> None:
    y = np.array([[[[0.5 / 255, 1.6 / 255], [np.inf, -0.2]]]], dtype=np.float32)
    out = quantize(y, 8)
    assert out.pixels[..., 0].tolist() == [[[0, 2], [255, 0]]] and not out.finite[0]
    assert isinstance(out, Output)


@pytest.mark.parametrize("row", [r for r in support_table() if r.problem and r.device == "cpu"
                                 and r.kind not in ("tensorrt", "aoti")],
                         ids=lambda r: f"{r.backend}-{r.precision}-{r.kind}")
def test_open_backend_refuses_what_the_support_table_refuses(
        generator_file: Path, onnx_files, row) -> None:
    engine = _engines(generator_file, onnx_files)
    with pytest.raises(UserError) as err:
        open_backend(engine[row.kind], row.backend, "cpu", row.precision)
    assert row.problem in str(err.value)


def test_support_table_is_complete_and_explained() -> None:
    from srgan_runtime.backends.support import backend_names, support_summary

    NAMES = backend_names()

    rows = support_table()
    assert len(rows) == 5 * 2 * 4 * 6
    assert all(r.problem is None or len(r.problem) > 20 for r in rows)
    assert {r.backend for r in supported(device="cpu")} == {"torch", "onnxruntime", "openvino",
                                                            "aoti"}
    assert {(r.precision, r.kind) for r in supported("tensorrt")} == {("fp32", "tensorrt"),
                                                                      ("fp16", "tensorrt")}
    assert len(support_summary().splitlines()) == len(NAMES)
    assert all(isinstance(installed(n), bool) for n in NAMES)


def test_backend_selection_errors(generator_file: Path, onnx_files, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="onnxruntime runs onnx files, not generator"):
        open_backend(generator_file, "onnxruntime", "cpu")
    with pytest.raises(UserError, match="no fast fp16 on the CPU"):
        open_backend(generator_file, "torch", "cpu", "fp16")
    with pytest.raises(UserError, match="export an fp16 file"):
        open_backend(onnx_files[0], "onnxruntime", "cpu", "fp16")
    with pytest.raises(UserError, match="unknown model type"):
        open_backend(Path(__file__), "auto")
    with pytest.raises(UserError, match="no such file"):
        open_backend(tmp_path / "nope.onnx")
    assert open_backend(onnx_files[0], "auto", "cpu").name in ("openvino", "onnxruntime")


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.cuda
@pytest.mark.skipif(not _cuda(), reason="needs a CUDA GPU (none on this machine)")
@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
def test_torch_cuda_parity(generator_file: Path, precision: str) -> None:
    ref = open_backend(generator_file, "torch", "cpu", "fp32")
    gpu = open_backend(generator_file, "torch", "cuda", precision)
    gate = Gate.for_precision(precision)
    for name, img in _lr_images("Set5"):
        x = _chw(img)
        case = compare_outputs(name, ref.run_float(x).astype(np.float64), gpu.run_float(x))
        assert case.finite and case.psnr >= gate.min_psnr
        assert not gate.min_ssim or case.ssim >= gate.min_ssim


@pytest.mark.trt
@pytest.mark.skipif(not _cuda() or __import__("importlib").util.find_spec("tensorrt") is None,
                    reason="needs TensorRT and a CUDA GPU (not on this machine)")
def test_tensorrt_backend_parity(generator_file: Path, onnx_files, tmp_path: Path) -> None:
    from srgan_export.trt_engine import BuildOptions, build_engine, compute_profile

    info = describe(onnx_files[1])
    prof = compute_profile(info, min_s="1x8x8", opt_s="4x64x64", max_s="4x256x256")
    build_engine(onnx_files[1], tmp_path / "m.plan", info, prof, BuildOptions(fp16=True),
                 cache_dir=tmp_path / "cache")
    up = Upscaler(tmp_path / "m.plan", backend="tensorrt", tile=64, batch=4)
    ref = Upscaler(generator_file, backend="torch", device="cpu", tile=0)
    for name, img in _lr_images("Set5"):
        p = psnr(up.upscale(img), ref.upscale(img))
        assert p >= 45, name


def test_png_level_changes_size_not_pixels(tmp_path: Path) -> None:
    """zlib level is a speed/size trade only: identical pixels (8- and 16-bit), smaller at 9."""
    from srgan_runtime.core.imageio import encode_image

    y, x = np.mgrid[0:96, 0:128]
    smooth = np.stack([x * 2, y * 2, (x + y)], axis=2).astype(np.uint8)
    for colour in (smooth, smooth.astype(np.uint16) * 257):
        pic = Picture(colour)
        fast, small = encode_image(pic, "png", png_level=1), encode_image(pic, "png", png_level=9)
        assert len(small) < len(fast)
        for k, data in enumerate((fast, small)):
            (tmp_path / f"{k}.png").write_bytes(data)
            back = load_image(tmp_path / f"{k}.png")
            assert back.colour.dtype == colour.dtype and np.array_equal(back.colour, colour)


@pytest.mark.parametrize("native", [True, False])
def test_precision_auto_follows_the_cpu(generator_file: Path, onnx_files, native: bool,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import srgan_runtime.core.machine as machine

    monkeypatch.setattr(machine, "native_bf16", lambda: native)
    b = open_backend(generator_file, "torch", "cpu")
    assert b.precision == ("bf16" if native else "fp32")
    assert "precision auto" in b.choice and ("native bf16" in b.choice)
    ort = open_backend(onnx_files[0], "onnxruntime", "cpu")
    assert ort.precision == "fp32"
    assert ("has no bf16" in ort.choice) == native
    assert open_backend(onnx_files[1], "onnxruntime", "cpu").precision == "fp16"  # the file's
    assert open_backend(generator_file, "torch", "cpu", "fp32").choice == ""  # explicit wins
    up = Upscaler(generator_file, backend="torch", device="cpu", tile=0)
    assert "precision auto" in up.describe()


def test_native_bf16_is_read_from_the_cpu_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    import srgan_runtime.core.machine as machine

    monkeypatch.delenv("SRGAN_NATIVE_BF16")
    for flags, want in (("fpu avx512f avx512_bf16", True), ("fpu amx_bf16 amx_tile", True),
                        ("fpu avx2 avx512f avx512_vnni", False), ("", False)):
        monkeypatch.setattr(machine, "cpu_flags", lambda f=flags: frozenset(f.split()))
        assert machine.native_bf16() is want
    monkeypatch.setenv("SRGAN_NATIVE_BF16", "1")
    assert machine.native_bf16() is True


def test_backend_auto_runs_generators_in_openvino_through_a_cached_export(
        generator_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("openvino")
    import srgan_export
    from srgan_runtime.core.files import file_sha256
    from srgan_runtime.onnx_cache import cache_path

    b = open_backend(generator_file, "auto", "cpu")
    assert b.name == "openvino" and b.info.format == "onnx"
    assert "backend auto: OpenVINO" in b.choice and "precision auto" in b.choice
    cached = cache_path(file_sha256(generator_file))
    assert Path(b.info.path) == cached and cached.is_file()
    assert b.info.source_sha256 == file_sha256(generator_file)

    def no_export(*a, **k):
        raise AssertionError("exported twice")

    monkeypatch.setattr(srgan_export, "export_onnx", no_export)
    assert open_backend(generator_file, "auto", "cpu").info.path == str(cached)
    assert open_backend(generator_file, "auto", "cpu", cache=False).name == "torch"
    bundled = open_backend("default", "auto", "cpu")  # its shipped ONNX copy, no export
    assert bundled.name == "openvino" and bundled.info.path.endswith("default.onnx")
