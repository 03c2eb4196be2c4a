"""Training loop: exact resume, Ctrl-C style stops, GAN phase, EMA, schedules, quality."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from srgan_runtime.core.errors import UserError
from srgan_train.archs import build_generator
from srgan_train.checkpoint import load_generator, save_generator, save_training_state
from srgan_train.config import GeneratorConfig, preset_config
from srgan_train.ema import EMA
from srgan_train.train import TrainConfig, Trainer, lr_factor, prepare_run_dir


def _cfg(data: Path, out: Path, **kw) -> TrainConfig:
    base = dict(data=[str(data)], out=str(out), preset="tiny", scale=4, steps=12, batch_size=4,
                patch_size=32, log_every=1, save_every=5, val_every=6, progress=False, seed=5)
    base.update(kw)
    return TrainConfig(**base)


def _losses(run: Path) -> list[tuple[int, float]]:
    rows = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in rows if r["kind"] == "train"]


def _run(cfg: TrainConfig, stop_at: int | None = None, resume: bool = False):
    prepare_run_dir(Path(cfg.out), resume=resume, overwrite=False)
    t = Trainer(cfg, resume=resume)
    if stop_at is not None:
        t.on_step = lambda tr, row: tr.request_stop() if tr.step == stop_at else None
    return t.fit()


@pytest.mark.parametrize("phase", ["pretrain", "gan"])
def test_interrupted_and_resumed_run_equals_uninterrupted(
    tmp_path: Path, textures: Path, phase: str
) -> None:
    kw = dict(phase=phase, val=str(textures), preset="seed" if phase == "pretrain" else "tiny")
    if phase == "pretrain":
        kw.update(scale=2, patch_size=16)  # the seed preset: BN, dropout (RNG state) and EMA
    full = _run(_cfg(textures, tmp_path / "full", **kw))
    assert full.step == 12 and not full.interrupted

    part = _run(_cfg(textures, tmp_path / "part", **kw), stop_at=7)
    assert part.interrupted and part.step == 7
    resumed = _run(_cfg(textures, tmp_path / "part", **kw), resume=True)
    assert resumed.step == 12 and not resumed.interrupted

    a, b = _losses(tmp_path / "full"), _losses(tmp_path / "part")
    assert [s for s, _ in a] == list(range(1, 13))
    assert a == b  # identical losses, step by step
    ga = load_generator(tmp_path / "full" / "generator.safetensors").model.state_dict()
    gb = load_generator(tmp_path / "part" / "generator.safetensors").model.state_dict()
    assert all(torch.equal(ga[k], gb[k]) for k in ga)
    va = (tmp_path / "full" / "val.csv").read_text()
    assert va == (tmp_path / "part" / "val.csv").read_text()


def test_resume_after_crash_drops_rows_past_the_checkpoint(tmp_path: Path,
                                                          textures: Path) -> None:
    cfg = _cfg(textures, tmp_path / "r", steps=8, save_every=4)
    _run(cfg)
    # Pretend the process died at step 6: the checkpoint says 4, rows 5..8 must go.
    t = Trainer(cfg, resume=True)
    assert t.step == 8
    state = torch.load(tmp_path / "r/checkpoints/last.pt", weights_only=True)
    state["step"] = 4
    save_training_state(state, tmp_path / "r/checkpoints/last.pt")  # sealed with a new digest
    cfg2 = _cfg(textures, tmp_path / "r", steps=8, save_every=4)
    Trainer(cfg2, resume=True).fit()
    steps = [s for s, _ in _losses(tmp_path / "r")]
    assert steps == list(range(1, 9))


def test_gan_phase_with_perceptual_loss(tmp_path: Path, textures: Path) -> None:
    from srgan_train.vgg import vgg19_features

    torch.manual_seed(0)
    feats = vgg19_features("pool5")
    # torchvision's key layout: features.<index>.weight plus classifier weights we ignore.
    state = {f"features.{k}": v for k, v in feats.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(2, 2)
    vgg = tmp_path / "vgg19.pth"
    torch.save(state, vgg)
    init = tmp_path / "init.safetensors"
    save_generator(build_generator(preset_config("tiny", 4)), init, preset="tiny", step=0)
    cfg = _cfg(textures, tmp_path / "gan", phase="gan", vgg_weights=str(vgg),
               vgg_layer="conv2_2", init=str(init), steps=4)
    res = _run(cfg)
    rows = [json.loads(ln) for ln in (tmp_path / "gan/metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["kind"] == "train"]
    assert all({"perceptual", "adversarial", "d_loss"} <= set(r) for r in train)
    assert cfg.pixel_weight == pytest.approx(1e-2)
    meta = load_generator(res.generator).metadata
    assert meta["phase"] == "gan"


def test_gan_without_vgg_says_so(tmp_path: Path, textures: Path,
                                 caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        _run(_cfg(textures, tmp_path / "g", phase="gan", steps=2))
    assert "without the perceptual term" in caplog.text


def test_bad_vgg_weights_and_init_mismatch(tmp_path: Path, textures: Path) -> None:
    bad = tmp_path / "bad.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, bad)
    with pytest.raises(UserError, match="VGG19"):
        Trainer(_cfg(textures, tmp_path / "a", phase="gan", vgg_weights=str(bad)))
    init = tmp_path / "x2.safetensors"
    save_generator(build_generator(preset_config("tiny", 2)), init, preset="tiny", step=0)
    with pytest.raises(UserError, match="configs differ"):
        Trainer(_cfg(textures, tmp_path / "b", init=str(init)))


def test_run_folder_rules(tmp_path: Path) -> None:
    out = tmp_path / "run"
    prepare_run_dir(out, resume=False, overwrite=False)
    (out / "config.json").write_text("{}")
    with pytest.raises(UserError, match="exists"):
        prepare_run_dir(out, resume=False, overwrite=False)
    prepare_run_dir(out, resume=False, overwrite=True)
    assert not any(out.iterdir())
    with pytest.raises(UserError, match="nothing to resume"):
        prepare_run_dir(out, resume=True, overwrite=False)
    other = tmp_path / "precious"
    other.mkdir()
    (other / "thesis.txt").write_text("do not delete")
    with pytest.raises(UserError, match="refusing to delete"):
        prepare_run_dir(other, resume=False, overwrite=True)
    assert (other / "thesis.txt").exists()


def test_ema_averages_parameters_and_buffers() -> None:
    g = build_generator(GeneratorConfig(scale=2, channels=4, blocks=1, batchnorm=True))
    ema = EMA(g, decay=0.5)
    with torch.no_grad():
        for p in g.parameters():
            p.add_(1.0)
        for b in g.buffers():
            if b.is_floating_point():
                b.add_(1.0)
    before = {k: v.clone() for k, v in ema.state_dict().items()}
    ema.update(g, step=10**6)  # decay 0.5 once warm
    after = ema.state_dict()
    mean_key = next(k for k in after if k.endswith("running_mean"))
    assert torch.allclose(after[mean_key], before[mean_key] + 0.5)
    w_key = "head.0.weight"
    assert torch.allclose(after[w_key], before[w_key] + 0.5)


def test_lr_schedules() -> None:
    assert lr_factor("constant", 50, 100, 0, 0.01) == 1.0
    assert lr_factor("cosine", 0, 100, 0, 0.01) == pytest.approx(1.0)
    assert lr_factor("cosine", 100, 100, 0, 0.01) == pytest.approx(0.01)
    assert lr_factor("cosine", 5, 100, 10, 0.01) == pytest.approx(0.6)
    assert lr_factor("step", 60, 100, 0, 0.0) == 0.5
    assert lr_factor("step", 95, 100, 0, 0.0) == 0.125


@pytest.mark.data
def test_short_training_beats_bicubic_on_set5(tmp_path: Path, t91: Path, set5: Path) -> None:
    """A couple of hundred steps of the tiny preset on T91 already beat bicubic on Set5."""
    cfg = TrainConfig(data=[str(t91)], val=str(set5), out=str(tmp_path / "t"), preset="tiny",
                      scale=4, steps=200, batch_size=16, patch_size=64, val_every=200,
                      progress=False)
    prepare_run_dir(tmp_path / "t", resume=False, overwrite=False)
    res = Trainer(cfg).fit()
    assert res.best_psnr is not None and res.best_psnr > 28.43 + 0.15  # bicubic: 28.43


def test_amp_choice_per_device(caplog: pytest.LogCaptureFixture) -> None:
    from srgan_train.train import pick_amp

    cpu = torch.device("cpu")
    assert pick_amp("auto", cpu) is None  # emulated bf16 is slow on older CPUs: never implicit
    assert pick_amp("off", cpu) is None
    assert pick_amp("bf16", cpu) is torch.bfloat16
    with caplog.at_level(logging.WARNING):
        assert pick_amp("fp16", cpu) is None
    assert "fp16 is not used on cpu" in caplog.text


def test_bf16_autocast_keeps_the_bicubic_base_in_fp32() -> None:
    """Under autocast only the residual is low precision: with the residual zeroed the output
    equals the fp32 bicubic upscale exactly, and with weights it stays within bf16 error."""
    torch.manual_seed(0)
    g = build_generator(preset_config("tiny", 4)).eval()
    x = torch.rand(2, 3, 20, 17)
    with torch.no_grad():
        full = g(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = g(x)
        assert mixed.dtype == torch.float32
        assert 0 < (mixed - full).abs().max() < 0.02
        g.tail.weight.zero_()
        g.tail.bias.zero_()
        base = g.bicubic(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert torch.equal(g(x), base)


def test_cpu_bf16_training_tracks_fp32(tmp_path: Path, textures: Path) -> None:
    """The same run in bf16 autocast and in fp32: close losses step by step, close validation."""
    runs = {}
    for amp in ("off", "bf16"):
        res = _run(_cfg(textures, tmp_path / amp, amp=amp, steps=30, val=str(textures),
                        val_every=30))
        assert res.step == 30 and not res.interrupted
        runs[amp] = (res.best_psnr, [loss for _, loss in _losses(tmp_path / amp)])
    (p32, l32), (p16, l16) = runs["off"], runs["bf16"]
    assert abs(p32 - p16) < 0.1
    assert sum(l16) == pytest.approx(sum(l32), rel=0.03)
    assert l16 != l32  # bf16 really ran


def test_gan_phase_keeps_the_latest_generator_not_the_best_psnr(tmp_path: Path,
                                                               textures: Path) -> None:
    """A GAN trades PSNR for texture, so picking its best-PSNR step would pick the least
    adversarial one: the GAN phase's generator file is the latest validated EMA generator."""
    res = _run(_cfg(textures, tmp_path / "gan", phase="gan", steps=6, val=str(textures),
                    val_every=2, lr=5e-3))
    vals = [json.loads(ln) for ln in (tmp_path / "gan/metrics.jsonl").read_text().splitlines()]
    last = [r for r in vals if r["kind"] == "val"][-1]
    meta = load_generator(res.generator).metadata
    assert int(meta["step"]) == 6 and last["step"] == 6
    assert float(meta["val_psnr"]) == pytest.approx(last["psnr"], abs=1e-4)
    pre = _run(_cfg(textures, tmp_path / "pre", steps=6, val=str(textures), val_every=2))
    assert int(load_generator(pre.generator).metadata["step"]) == pre.best_step


@pytest.mark.parametrize("k", range(8))
def test_dihedral_transforms_invert_on_non_square_images(k: int) -> None:
    from srgan_train.evaluate import dihedral

    x = torch.arange(2 * 3 * 4 * 7, dtype=torch.float32).reshape(2, 3, 4, 7)
    t = dihedral(x, k)
    assert t.shape[-2:] == ((7, 4) if k % 2 else (4, 7))
    assert torch.equal(dihedral(t, k, inverse=True), x)
    assert len({tuple(dihedral(x, j).flatten().tolist()) for j in range(8)}) == 8


def test_self_ensemble_eval(rng) -> None:
    """An equivariant model (the bicubic skip alone) is unchanged by the ensemble; a model with
    a learned branch gets a different, valid output of the same size."""
    import numpy as np

    from srgan_train.evaluate import torch_upscaler

    torch.manual_seed(0)
    g = build_generator(preset_config("tiny", 4)).eval()
    lr = rng.integers(0, 256, (13, 18, 3), dtype=np.uint8)
    plain, plus = torch_upscaler(g)(lr), torch_upscaler(g, self_ensemble=True)(lr)
    assert plus.shape == plain.shape == (52, 72, 3) and plus.dtype == np.uint8
    assert not np.array_equal(plain, plus)
    with torch.no_grad():
        g.tail.weight.zero_()
        g.tail.bias.zero_()
    a, b = torch_upscaler(g)(lr).astype(int), torch_upscaler(g, self_ensemble=True)(lr)
    assert np.abs(a - b).max() <= 1  # float rounding of the same bicubic, not a different image


def _fake_clock(monkeypatch, t: Trainer, seconds_per_step) -> None:
    """Drive the trainer's clock by steps: step k takes ``seconds_per_step(k)`` seconds."""
    import srgan_train.train as train_mod

    now = [0.0]
    monkeypatch.setattr(train_mod.time, "perf_counter", lambda: now[0])

    def tick(tr: Trainer, row: dict) -> None:
        now[0] += seconds_per_step(tr.step)

    t.on_step = tick


def test_time_limit_fits_the_step_count_and_schedule(tmp_path: Path, textures: Path,
                                                     monkeypatch) -> None:
    cfg = _cfg(textures, tmp_path / "t", steps=1000, time_limit=2.0, val_every=50, lr=1e-3,
               val=str(textures))
    prepare_run_dir(Path(cfg.out), resume=False, overwrite=False)
    t = Trainer(cfg)
    _fake_clock(monkeypatch, t, lambda step: 1.0)
    res = t.fit()
    # 1 step/s: timed over steps 10..110, then 10 s left at 92% -> 9 more steps.
    assert not res.interrupted and res.step == 119
    saved = json.loads((tmp_path / "t" / "config.json").read_text())
    assert saved["steps"] == 119 and saved["extra"]["requested_steps"] == 1000
    assert saved["extra"]["fitted_steps_per_s"] == pytest.approx(1.0)
    lrs = [json.loads(ln) for ln in (tmp_path / "t" / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in lrs if r["kind"] == "train"][-1]
    assert last["step"] == 119 and last["lr"] < 0.02 * 1e-3  # the cosine ran to its end
    assert [r["step"] for r in lrs if r["kind"] == "val"][-1] == 119  # validated at the end


def test_time_limit_stops_a_run_that_slows_down(tmp_path: Path, textures: Path,
                                                monkeypatch) -> None:
    cfg = _cfg(textures, tmp_path / "t", steps=1000, time_limit=2.0)
    prepare_run_dir(Path(cfg.out), resume=False, overwrite=False)
    t = Trainer(cfg)
    _fake_clock(monkeypatch, t, lambda step: 1.0 if step <= 111 else 5.0)
    res = t.fit()
    assert res.interrupted and res.step < 119 and res.seconds >= 120
    assert (tmp_path / "t" / "checkpoints" / "last.pt").is_file()
    assert (tmp_path / "t" / "generator.safetensors").is_file()


def test_time_limit_never_exceeds_the_requested_steps(tmp_path: Path, textures: Path,
                                                      monkeypatch) -> None:
    cfg = _cfg(textures, tmp_path / "t", steps=150, time_limit=60.0)
    prepare_run_dir(Path(cfg.out), resume=False, overwrite=False)
    t = Trainer(cfg)
    _fake_clock(monkeypatch, t, lambda step: 1.0)
    res = t.fit()
    assert res.step == 150 and not res.interrupted
    with pytest.raises(UserError, match="time-limit"):
        _cfg(textures, tmp_path / "x", time_limit=0).resolved()
