"""CUDA paths with real kernels: parity of the bundled model, tiling, batching, out-of-memory
recovery, the fp16 NaN fallback, training with AMP and the CLI. Skipped without a CUDA GPU."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import image_set

from srgan_runtime import Upscaler
from srgan_runtime.core.imageio import Picture
from srgan_runtime.core.metrics import psnr, ssim


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not _cuda(), reason="needs a CUDA GPU (none on this machine)")]


def _set5_lr() -> list[tuple[str, np.ndarray]]:
    from srgan_runtime.core.files import list_images
    from srgan_runtime.core.imageio import load_rgb

    imgs = [(p.stem, load_rgb(p)) for p in list_images(image_set("Set5") / "LR_bicubic" / "X4")]
    baby = dict(imgs)["baby"]  # + a 128x256 real image: several 96-pixel tiles each way
    return [*imgs, ("baby2", np.ascontiguousarray(np.concatenate([baby, baby[:, ::-1]], 1)))]


def _y_ssim(a: np.ndarray, b: np.ndarray) -> float:
    from srgan_runtime.core.metrics import rgb_to_y

    return ssim(rgb_to_y(a), rgb_to_y(b))


@pytest.mark.data
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_bundled_model_cuda_matches_cpu_fp32(precision: str) -> None:
    """Trained weights (not a random net): tiled CUDA output against whole-image CPU fp32."""
    ref = Upscaler(backend="torch", device="cpu", precision="fp32", tile=0)
    gpu = Upscaler(backend="torch", device="cuda", precision=precision, tile=96, batch=8,
                   seamless=True)
    floor = 60.0 if precision == "fp32" else 45.0
    for name, img in _set5_lr():
        a, b = ref.upscale(img), gpu.upscale(img)
        assert a.shape == b.shape, name
        p = psnr(a, b)
        print(f"{precision} {name}: {p:.2f} dB")
        assert p >= floor, name
        if precision != "fp32":
            assert _y_ssim(a, b) >= 0.999, name


@pytest.mark.data
def test_cuda_tiled_equals_whole_and_batch_equals_single() -> None:
    kw = {"backend": "torch", "device": "cuda", "precision": "fp32", "seamless": True}
    whole = Upscaler(tile=0, **kw)
    tiled = Upscaler(tile=96, batch=1, **kw)
    batched = Upscaler(tile=96, batch=8, **kw)
    for name, img in _set5_lr():
        w, t, b = whole.upscale(img), tiled.upscale(img), batched.upscale(img)
        assert psnr(w, t) >= 50, name
        # cuDNN may choose another algorithm per batch size: at most one level apart.
        diff = np.abs(t.astype(int) - b.astype(int))
        print(f"{name}: tiled vs whole {psnr(w, t):.2f} dB, batch 8 vs 1 max diff {diff.max()}")
        assert diff.max() <= 1, name


def test_cuda_out_of_memory_halves_the_tile_and_finishes() -> None:
    """A real CUDA OOM (the process's allocator capped at 1 GiB) on a 1024-pixel tile."""
    import torch

    rng = np.random.default_rng(0)
    img = (rng.random((96, 96, 3)) * 255).astype(np.uint8)
    img = np.kron(img, np.ones((8, 8, 1), dtype=np.uint8))  # 768x768, smooth blocks
    ref = Upscaler(backend="torch", device="cuda", precision="fp32", tile=128, batch=1,
                   seamless=True).upscale(img)
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(min(1.0, (1 << 30) / total))
    try:
        up = Upscaler(backend="torch", device="cuda", precision="fp32", tile=1024, batch=2,
                      seamless=True)
        ((_, out, stats),) = list(up.upscale_many([("big", Picture.from_array(img))]))
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        torch.cuda.empty_cache()
    print(f"tile 1024 -> {up.tile}, retries {stats.oom_retries}, warnings {stats.warnings}")
    assert stats.oom_retries >= 1 and up.tile < 1024
    assert any("out of memory" in w for w in stats.warnings)
    assert psnr(out.to_array(), ref) >= 50


def test_cuda_fp16_overflow_is_recomputed_in_fp32(tmp_path: Path) -> None:
    """Weights that overflow fp16 (not fp32): the tile comes back NaN/Inf and is redone."""
    import torch

    from srgan_train.archs import build_generator
    from srgan_train.checkpoint import save_generator
    from srgan_train.config import preset_config

    torch.manual_seed(0)
    g = build_generator(preset_config("tiny", 4)).eval()
    with torch.no_grad():
        first = next(m for m in g.modules() if isinstance(m, torch.nn.Conv2d))
        first.weight.mul_(1e6)  # activations ~1e5-1e6: beyond fp16's 65504
    path = tmp_path / "hot.safetensors"
    save_generator(g, path, preset="tiny", step=1)
    img = (np.random.default_rng(1).random((40, 48, 3)) * 255).astype(np.uint8)
    fp32 = Upscaler(path, backend="torch", device="cuda", precision="fp32", tile=0).upscale(img)
    up = Upscaler(path, backend="torch", device="cuda", precision="fp16", tile=0)
    ((_, out, stats),) = list(up.upscale_many([("hot", Picture.from_array(img))]))
    assert stats.fp32_tiles == 1 and any("recomputed in fp32" in w for w in stats.warnings)
    assert np.abs(out.to_array().astype(int) - fp32.astype(int)).max() <= 1


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_fit_on_cuda_with_amp(tmp_path: Path, textures: Path, amp: str) -> None:
    from srgan_train.train import TrainConfig, Trainer, prepare_run_dir

    cfg = TrainConfig(data=[str(textures)], val=str(textures), out=str(tmp_path / amp),
                      preset="tiny", scale=4, steps=60, batch_size=8, patch_size=32,
                      val_every=30, progress=False, amp=amp, device="cuda", workers=2)
    prepare_run_dir(Path(cfg.out), resume=False, overwrite=False)
    t = Trainer(cfg)
    assert str(t.amp_dtype).endswith("bfloat16" if amp == "bf16" else "float16")
    res = t.fit()
    assert res.step == 60 and res.best_psnr is not None and np.isfinite(res.best_psnr)
    rows = [json.loads(ln) for ln in (tmp_path / amp / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["loss"]) for r in rows if r["kind"] == "train")
    cpu = TrainConfig(**{**cfg.__dict__, "out": str(tmp_path / "cpu"), "device": "cpu",
                         "amp": "off", "extra": {}})
    prepare_run_dir(Path(cpu.out), resume=False, overwrite=False)
    ref = Trainer(cpu).fit()
    print(f"{amp} on cuda: val {res.best_psnr:.3f} dB; fp32 on cpu: {ref.best_psnr:.3f} dB")
    assert abs(res.best_psnr - ref.best_psnr) < 0.3


@pytest.mark.data
def test_srrun_folder_on_cuda_fp16(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from srgan_runtime.cli import cli

    src = image_set("Set5") / "LR_bicubic" / "X4"
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, ["upscale", str(src), "-o", str(out), "--device", "cuda",
                                   "--precision", "fp16", "--batch", "8",
                                   "--report", str(tmp_path / "run.json")])
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "run.json").read_text())
    ok = [f for f in report["files"] if f["status"] == "ok"]
    assert len(ok) == 5
    ref = Upscaler(backend="torch", device="cpu", precision="fp32", tile=0)
    from srgan_runtime.core.imageio import load_rgb

    for name, img in _set5_lr()[:5]:
        got = load_rgb(out / f"{name}_x4.png")
        assert psnr(ref.upscale(img), got) >= 45, name


@pytest.mark.parametrize(("preset", "scale"), [("large", 4), ("large", 2), ("medium", 3)])
def test_subpixel_tail_on_cuda(preset: str, scale: int) -> None:
    """The tail rewrite (the runtime's network on every device) computes the original function
    with cuDNN's kernels too: fp32 without TF32 to 1e-4, fp16 autocast within the fp16 gate."""
    import torch

    from srgan_train.archs import build_generator, subpixel_tail
    from srgan_train.config import preset_config

    torch.manual_seed(3)
    g = build_generator(preset_config(preset, scale)).eval()
    with torch.no_grad():
        for p in g.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    h = subpixel_tail(g).eval().cuda()
    g = g.cuda()
    x = torch.rand(2, 3, 45, 61, device="cuda")
    old = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        with torch.inference_mode():
            a, b = g(x), h(x)
            with torch.autocast("cuda", dtype=torch.float16):
                c = h(x).float()
    finally:
        torch.backends.cudnn.allow_tf32 = old
    assert (a - b).abs().max().item() < 1e-4
    q = [np.clip(np.rint(t.cpu().numpy() * 255), 0, 255).astype(np.uint8) for t in (a, c)]
    print(f"{preset} x{scale}: fp32 max|d| {(a - b).abs().max().item():.2e}, fp16 "
          f"{psnr(q[0][0].transpose(1, 2, 0), q[1][0].transpose(1, 2, 0)):.1f} dB")
    assert psnr(q[0][0].transpose(1, 2, 0), q[1][0].transpose(1, 2, 0)) >= 45


@pytest.mark.data
@pytest.mark.parametrize("mode", ["reduce-overhead", "aoti"])
def test_compiled_paths_on_cuda_match_cpu_fp32(mode: str, tmp_path: Path) -> None:
    """torch.compile with CUDA graphs, and an AOTInductor package, in fp16, tiled (full tiles
    only), against whole-image CPU fp32."""
    ref = Upscaler(backend="torch", device="cpu", precision="fp32", tile=0)
    if mode == "aoti":
        from srgan_export.aoti import AotiOptions, export_aoti
        from srgan_runtime.core.modelinfo import default_model

        pkg = tmp_path / "default-fp16.pt2"
        _, report = export_aoti(default_model(), pkg, AotiOptions(
            device="cuda", precision="fp16", tile=128, batch=8))
        assert report.passed, report.lines()
        gpu = Upscaler(pkg, seamless=True)
    else:
        gpu = Upscaler(backend="torch", device="cuda", precision="fp16", tile=128, batch=8,
                       seamless=True, compile=mode)
    assert (gpu.tile, gpu.batch) == (128, 8)
    for name, img in _set5_lr():
        p = psnr(ref.upscale(img), gpu.upscale(img))
        print(f"{mode} fp16 {name}: {p:.2f} dB")
        assert p >= 45, name
