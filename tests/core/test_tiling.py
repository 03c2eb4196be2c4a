"""Tile planning (pure numpy): every pixel kept exactly once, same-size tiles, enough context."""

from __future__ import annotations

import numpy as np
import pytest

from srgan_runtime.core.fitting import pad_to
from srgan_runtime.tiling import plan_axis, plan_tiles, seam_score


@pytest.mark.parametrize("length", [1, 5, 64, 65, 100, 127, 128, 129, 300, 1000])
@pytest.mark.parametrize(("tile", "overlap"), [(64, 8), (128, 24), (50, 0), (0, 10)])
def test_cores_partition_the_axis(length: int, tile: int, overlap: int) -> None:
    spans = plan_axis(length, tile, overlap)
    covered = np.zeros(length, dtype=int)
    for s in spans:
        covered[s.lo:s.hi] += 1
        assert 0 <= s.start <= s.lo < s.hi <= s.start + s.size <= length
        if 0 < tile < length:
            assert s.size == tile  # same shape for fixed-shape engines
            if s.lo > 0:
                assert s.lo - s.start >= overlap
            if s.hi < length:
                assert s.start + s.size - s.hi >= overlap
    assert (covered == 1).all()


def test_overlap_must_leave_a_core() -> None:
    with pytest.raises(ValueError, match="no core"):
        plan_axis(500, 64, 32)


def test_plan_tiles_and_padding() -> None:
    tiles = plan_tiles(300, 130, 128, 16)
    assert len({(t.y.size, t.x.size) for t in tiles}) == 1
    img = np.arange(5 * 4 * 3, dtype=np.uint8).reshape(5, 4, 3)
    padded = pad_to(img, 9, 7)
    assert padded.shape == (9, 7, 3) and np.array_equal(padded[:5, :4], img)
    assert pad_to(img, 3, 3) is img


def test_seam_score() -> None:
    tiles = plan_tiles(32, 32, 16, 2)
    whole = np.zeros((128, 128))
    assert seam_score(whole, whole, tiles, 4) == 0.0
    seam = whole.copy()
    b = tiles[0].y.hi * 4
    seam[b - 1:b + 1, :] = 10
    seam[5, 5] = 1
    assert seam_score(seam, whole, tiles, 4) > 10


@pytest.mark.parametrize("length", [129, 180, 300, 1000, 4097])
def test_even_tiles_need_no_more_tiles_and_waste_less(length: int) -> None:
    from srgan_runtime.tiling import even_tile

    t = even_tile(length, 148, 10)
    assert t <= 148
    assert len(plan_axis(length, t, 10)) == len(plan_axis(length, 148, 10))
    covered = sum(s.size for s in plan_axis(length, t, 10))
    assert covered <= sum(s.size for s in plan_axis(length, 148, 10))
    assert even_tile(180, 148, 10) == 100


# --- architectures with size requirements ------------------------------------------------------

@pytest.mark.parametrize("length,tile,overlap,align", [(96, 32, 6, 8), (200, 48, 8, 8),
                                                        (64, 24, 4, 4), (120, 40, 10, 4)])
def test_aligned_tiles_start_on_the_window_grid_and_cover_once(length: int, tile: int,
                                                               overlap: int, align: int) -> None:
    spans = plan_axis(length, tile, overlap, align)
    assert all(s.start % align == 0 and s.size == tile for s in spans)
    covered = np.zeros(length, int)
    for s in spans:
        covered[s.lo:s.hi] += 1
        assert s.lo - s.start >= overlap or s.start == 0  # left context
        assert s.start + s.size - s.hi >= overlap or s.hi == length  # right context
    assert (covered == 1).all()


def test_aligned_tiling_refuses_what_it_cannot_align() -> None:
    with pytest.raises(ValueError, match="multiples of 8"):
        plan_axis(100, 32, 4, 8)


def test_required_size() -> None:
    from srgan_runtime.core.fitting import required_size

    assert required_size(5, 7) == (5, 7)
    assert required_size(5, 7, minimum=16) == (16, 16)
    assert required_size(17, 30, multiple=8) == (24, 32)
    assert required_size(10, 30, multiple=4, square=True) == (32, 32)


def test_fit_batch_and_unfit_output_round_trip() -> None:
    from srgan_runtime.core.fitting import fit_batch, unfit_output

    rng = np.random.default_rng(0)
    batch = rng.random((2, 3, 13, 9), dtype=np.float32)
    fitted, shape = fit_batch(batch, channels=1, minimum=4, multiple=8)
    assert fitted.shape == (6, 1, 16, 16)
    # the original pixels sit unchanged in the top-left corner, planes in (image, colour) order
    assert np.array_equal(fitted[:, 0, :13, :9], batch.reshape(6, 13, 9))
    up = fitted.repeat(2, axis=2).repeat(2, axis=3)  # a stand-in x2 "model"
    back = unfit_output(up, shape, 2)
    assert back.shape == (2, 3, 26, 18)
    assert np.array_equal(back[:, :, ::2, ::2], batch)
    same, shape = fit_batch(batch)
    assert same is batch and unfit_output(same, shape, 1) is not None
