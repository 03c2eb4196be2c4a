"""Metrics under the standard protocol, cross-checked with scikit-image and reference values."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from srgan_runtime.core.metrics import modcrop, psnr, rgb_to_y, score_sr, shave, ssim, to_uint8


def test_psnr_known_value() -> None:
    a = np.zeros((8, 8))
    b = np.full((8, 8), 1.0)
    assert psnr(a, b) == pytest.approx(10 * np.log10(255**2))
    assert psnr(a, a) == float("inf")


def test_psnr_and_ssim_match_scikit_image(rng: np.random.Generator) -> None:
    for shape in [(64, 64), (37, 53), (11, 11)]:
        a = rng.uniform(0, 255, shape)
        b = np.clip(a + rng.normal(0, 12, shape), 0, 255)
        ref_ssim = structural_similarity(
            a, b, data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
        )
        assert ssim(a, b) == pytest.approx(ref_ssim, abs=1e-10)
        assert psnr(a, b) == pytest.approx(peak_signal_noise_ratio(a, b, data_range=255), 1e-12)


def test_ssim_identical_is_one_and_too_small_rejected(rng: np.random.Generator) -> None:
    a = rng.uniform(0, 255, (20, 20))
    assert ssim(a, a) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        ssim(a[:10], a[:10])


def test_rgb_to_y_is_matlab_rgb2ycbcr() -> None:
    img = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0]]], dtype=np.uint8)
    y = rgb_to_y(img)
    assert y[0, 0] == pytest.approx(16.0)
    assert y[0, 1] == pytest.approx(235.0)
    assert y[0, 2] == pytest.approx(16 + 65.481)
    grey = np.array([[0, 255]], dtype=np.uint8)
    assert rgb_to_y(grey)[0].tolist() == pytest.approx([16.0, 235.0])


def test_to_uint8_rounds_not_truncates() -> None:
    x = np.array([0.0, 0.5 / 255, 1.49 / 255, 254.6 / 255, 1.2, -0.1])
    assert to_uint8(x).tolist() == [0, 0, 1, 255, 255, 0]


def test_modcrop_and_shave() -> None:
    a = np.zeros((13, 10, 3))
    assert modcrop(a, 4).shape == (12, 8, 3)
    assert shave(a, 2).shape == (9, 6, 3)
    assert shave(a, 0).shape == a.shape


def test_score_sr_crops_hr_and_requires_integers(rng: np.random.Generator) -> None:
    hr = rng.integers(0, 256, (34, 27, 3), dtype=np.uint8)  # not a multiple of 4
    sr = hr[:32, :24].copy()
    s = score_sr(sr, hr, 4)
    assert s.psnr == float("inf") and s.ssim == pytest.approx(1.0)
    with pytest.raises(TypeError):
        score_sr(sr.astype(np.float32), hr, 4)


def test_metrics_and_images_need_no_torch() -> None:
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import srgan_runtime.core.metrics, srgan_runtime.core.files, srgan_train.evaluate\n"
        "print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


@pytest.mark.data
@pytest.mark.parametrize(
    ("name", "ref_psnr", "ref_ssim"),
    [("Set5", 28.43, 0.811), ("Set14", 26.09, 0.705), ("BSD100", 25.96, 0.668)],
)
def test_bicubic_reference_values(name: str, ref_psnr: float, ref_ssim: float) -> None:
    """The bicubic x4 baseline reproduces the reference numbers of the data README."""
    from conftest import image_set

    from srgan_train.evaluate import evaluate, load_eval_set

    pairs, errors = load_eval_set(image_set(name), 4)
    assert not errors
    mean = evaluate(pairs, 4, None).mean()
    assert mean["bicubic_psnr"] == pytest.approx(ref_psnr, abs=0.006)
    assert mean["bicubic_ssim"] == pytest.approx(ref_ssim, abs=0.0006)
