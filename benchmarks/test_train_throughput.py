"""Training throughput (samples/s) of one full training step: batch 16, HR patch 96, x4.

The step is ``Trainer.train_step``: forward, L1 loss, backward, gradient clipping, Adam, LR
schedule and EMA update, exactly what ``srtrain fit --phase pretrain`` runs per step.
"""

from __future__ import annotations

import pytest
import torch

from srgan_train.train import TrainConfig, Trainer

BATCH, PATCH, SCALE = 16, 96, 4


@pytest.mark.parametrize("preset", ["srresnet", "small"])
def test_train_step_throughput(benchmark, preset: str, tmp_path) -> None:
    torch.manual_seed(0)
    cfg = TrainConfig(data=["unused"], out=str(tmp_path), preset=preset, scale=SCALE,
                      batch_size=BATCH, patch_size=PATCH, steps=10**6, progress=False,
                      device="cpu")
    trainer = Trainer(cfg)
    lr = torch.rand(BATCH, 3, PATCH // SCALE, PATCH // SCALE)
    hr = torch.rand(BATCH, 3, PATCH, PATCH)
    benchmark.extra_info.update(preset=preset, batch=BATCH, hr_patch=PATCH, scale=SCALE,
                                threads=torch.get_num_threads())
    benchmark.pedantic(trainer.train_step, args=(lr, hr), rounds=5, iterations=1,
                       warmup_rounds=1)
    if benchmark.stats is not None:  # None in smoke mode (--benchmark-disable)
        benchmark.extra_info["samples_per_s"] = BATCH / benchmark.stats.stats.median
