"""Training data: folder layouts, pairing, aligned crops, augmentation, bad files."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from srgan_runtime.core.errors import UserError
from srgan_runtime.core.imageio import downscale, load_rgb
from srgan_train.data import PatchDataset, augment, find_pairs, load_pair, make_loader


def _write(path: Path, arr: np.ndarray, mode: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, mode=mode).save(path) if mode else Image.fromarray(arr).save(path)


def _paired(tmp: Path, rng: np.random.Generator, scale: int = 2, n: int = 3) -> Path:
    """HR/ and LR/ where HR is LR with every pixel repeated s x s times: any misalignment, also
    after flips and rotations, shows up as a pixel mismatch."""
    for i in range(n):
        lr = rng.integers(0, 256, (20 + i, 24 + i, 3), dtype=np.uint8)
        _write(tmp / "HR" / f"im{i}.png", lr.repeat(scale, axis=0).repeat(scale, axis=1))
        _write(tmp / "LR" / f"im{i}.png", lr)
    return tmp


def test_flat_folder_and_hr_subfolder(textures: Path) -> None:
    pairs = find_pairs(textures, 4)
    assert len(pairs) == 6 and all(p.lr is None for p in pairs)
    assert [p.name for p in pairs] == sorted(p.name for p in pairs)


def test_paired_layout_and_missing_partner(tmp_path: Path, rng: np.random.Generator) -> None:
    root = _paired(tmp_path / "d", rng)
    pairs = find_pairs(root, 2)
    assert [(p.hr.stem, p.lr.stem) for p in pairs] == [("im0", "im0"), ("im1", "im1"),
                                                       ("im2", "im2")]
    (root / "LR" / "im1.png").unlink()
    with pytest.raises(UserError, match=r"im1\.png: no LR partner"):
        find_pairs(root, 2)
    _write(root / "LR" / "im1.png", np.zeros((20, 24, 3), np.uint8))
    _write(root / "LR" / "extra.png", np.zeros((20, 24, 3), np.uint8))
    with pytest.raises(UserError, match=r"extra\.png: no HR partner"):
        find_pairs(root, 2)


def test_seed_layout(tmp_path: Path, rng: np.random.Generator) -> None:
    hr = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    _write(tmp_path / "high_res" / "a.png", hr)
    _write(tmp_path / "low_res" / "a.png", hr[::2, ::2])
    (p,) = find_pairs(tmp_path, 2)
    assert p.hr.parent.name == "high_res" and p.lr.parent.name == "low_res"


def test_missing_and_empty_folders(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        find_pairs(tmp_path / "nope", 4)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no images"):
        find_pairs(tmp_path / "empty", 4)


def test_wrong_lr_size_is_an_error(tmp_path: Path, rng: np.random.Generator) -> None:
    root = _paired(tmp_path, rng, n=1)
    _write(root / "LR" / "im0.png", np.zeros((10, 10, 3), np.uint8))
    (p,) = find_pairs(root, 2)
    with pytest.raises(UserError, match="expected 24x20"):  # HR is 48x40
        load_pair(p, 2)


def test_crops_are_exactly_aligned_with_augmentation(tmp_path: Path,
                                                     rng: np.random.Generator) -> None:
    root = _paired(tmp_path, rng, scale=2)
    ds = PatchDataset(find_pairs(root, 2), 2, 16, seed=3, augment=True)
    for i in range(40):
        lr, hr = ds.sample(i)
        assert lr.shape == (8, 8, 3) and hr.shape == (16, 16, 3)
        assert np.array_equal(hr[::2, ::2], lr)


def test_crop_offsets_are_exact(tmp_path: Path) -> None:
    """HR pixels encode their own coordinates; LR holds the coordinates of its HR origin."""
    s = 4
    yy, xx = np.mgrid[0:120, 0:100]
    hr = np.stack([yy, xx, np.zeros_like(yy)], axis=2).astype(np.uint8)
    _write(tmp_path / "HR" / "c.png", hr)
    _write(tmp_path / "LR" / "c.png", hr[::s, ::s])
    ds = PatchDataset(find_pairs(tmp_path, s), s, 32, seed=0, augment=False)
    offsets = set()
    for i in range(30):
        lr, hrp = ds.sample(i)
        assert np.array_equal(hrp[::s, ::s], lr)
        assert hrp[0, 0, 0] % s == 0 and hrp[0, 0, 1] % s == 0
        offsets.add((int(hrp[0, 0, 0]), int(hrp[0, 0, 1])))
    assert len(offsets) > 20  # crops are random


def test_on_the_fly_lr_is_the_whole_image_downscale(textures: Path) -> None:
    (p, *_) = find_pairs(textures, 4)
    lr, hr = load_pair(p, 4)
    assert np.array_equal(lr, downscale(load_rgb(p.hr), 4))
    assert hr.shape[0] == lr.shape[0] * 4 and hr.shape[1] == lr.shape[1] * 4


def test_augment_covers_the_eight_dihedral_variants() -> None:
    a = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    variants = {augment([a], h, v, t)[0].tobytes() for h in (0, 1) for v in (0, 1) for t in (0, 1)}
    assert len(variants) == 8


def test_samples_are_deterministic_and_epochs_cover_all_images(textures: Path) -> None:
    pairs = find_pairs(textures, 4)
    a = PatchDataset(pairs, 4, 32, seed=7)
    b = PatchDataset(pairs, 4, 32, seed=7, cache=False)
    for i in (0, 5, 17):
        assert all(np.array_equal(x, y) for x, y in zip(a.sample(i), b.sample(i), strict=True))
    c = PatchDataset(pairs, 4, 32, seed=8)
    assert not all(np.array_equal(x, y) for x, y in zip(a.sample(0), c.sample(0), strict=True))
    assert sorted(int(k) for k in a._perm(0)) == list(range(6))


def test_worker_count_does_not_change_batches(textures: Path) -> None:
    ds = PatchDataset(find_pairs(textures, 4), 4, 32, seed=1)
    one = [b[0] for b in make_loader(ds, 4, 2, 5, workers=0)]
    two = [b[0] for b in make_loader(ds, 4, 2, 5, workers=2)]
    assert len(one) == 3
    assert all(np.array_equal(x.numpy(), y.numpy()) for x, y in zip(one, two, strict=True))


def test_modes_are_converted_to_rgb(tmp_path: Path, rng: np.random.Generator) -> None:
    grey = rng.integers(0, 256, (20, 20), dtype=np.uint8)
    _write(tmp_path / "g.png", grey)
    Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).convert(
        "P", palette=Image.Palette.ADAPTIVE).save(tmp_path / "p.png")
    _write(tmp_path / "a.png", rng.integers(0, 256, (20, 20, 4), dtype=np.uint8))
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "g16.png")
    for name in ("g.png", "p.png", "a.png", "g16.png"):
        arr = load_rgb(tmp_path / name)
        assert arr.shape == (20, 20, 3) and arr.dtype == np.uint8
    assert np.array_equal(load_rgb(tmp_path / "g16.png")[..., 0], grey)


def test_small_and_corrupt_images_are_skipped_and_counted(
    tmp_path: Path, textures: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _write(textures / "small.png", np.zeros((20, 20, 3), np.uint8))
    (textures / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (textures / "half.png").write_bytes((textures / "tex_000.png").read_bytes()[:300])
    with caplog.at_level(logging.WARNING):
        ds = PatchDataset(find_pairs(textures, 4), 4, 64)
    assert (ds.report.used, ds.report.too_small, ds.report.unreadable) == (6, 1, 2)
    assert "small.png" in caplog.text and "broken.png" in caplog.text
    with pytest.raises(UserError, match="no usable training images"):
        PatchDataset(find_pairs(textures, 4), 4, 400)


def test_patch_must_be_multiple_of_scale(textures: Path) -> None:
    with pytest.raises(UserError, match="multiple of the scale"):
        PatchDataset(find_pairs(textures, 4), 4, 30)


def test_dark_16bit_grey_is_not_mistaken_for_8bit(tmp_path: Path) -> None:
    dark = np.full((8, 8), 200, dtype=np.uint16)  # 200/65535: nearly black, not grey 200
    Image.fromarray(dark).save(tmp_path / "dark16.png")
    assert load_rgb(tmp_path / "dark16.png").max() <= 1
