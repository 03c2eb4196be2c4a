"""Side-by-side crop comparison: pure strip layout and the ``srtrain compare`` command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from srgan_runtime.core.errors import UserError
from srgan_train.cli import cli
from srgan_train.compare import GAP, LABEL_HEIGHT, Box, Panel, comparison_strip


def test_strip_layout_and_exact_nearest_zoom(rng: np.random.Generator) -> None:
    imgs = [rng.integers(0, 256, (40, 60, 3), dtype=np.uint8) for _ in range(3)]
    grey = rng.integers(0, 256, (40, 60), dtype=np.uint8)
    box = Box(10, 5, 20, 16)
    strip = comparison_strip([Panel(f"p{i}  1 dB", im) for i, im in enumerate(imgs)]
                             + [Panel("grey", grey)], box, zoom=3)
    assert strip.shape == (16 * 3 + LABEL_HEIGHT, 4 * 20 * 3 + 3 * GAP, 3)
    second = strip[:48, 60 + GAP:120 + GAP]
    assert np.array_equal(second[::3, ::3], imgs[1][5:21, 10:30])  # each source pixel 3x3
    assert np.array_equal(second[1::3, 2::3], imgs[1][5:21, 10:30])
    assert np.array_equal(strip[:48, 3 * (60 + GAP):][::3, ::3, 1], grey[5:21, 10:30])
    assert (strip[:48, 60:60 + GAP] == 255).all()  # white gap
    assert (strip[48:] < 255).any()  # labels drawn


def test_box_parsing_and_bounds() -> None:
    assert Box.parse("1,2,3,4") == Box(1, 2, 3, 4)
    for bad in ("1,2,3", "a,b,c,d", "-1,0,4,4", "0,0,0,4"):
        with pytest.raises(UserError, match="--box"):
            Box.parse(bad)
    with pytest.raises(UserError, match="does not fit in the 60x40"):
        comparison_strip([Panel("x", np.zeros((40, 60, 3), np.uint8))], Box(50, 0, 20, 10))


def test_compare_command(tmp_path: Path, generator_file: Path, rng: np.random.Generator) -> None:
    hr = tmp_path / "hr.png"
    Image.fromarray(rng.integers(0, 256, (66, 81, 3), dtype=np.uint8)).save(hr)  # not mod 4
    out = tmp_path / "cmp.png"
    args = ["compare", str(hr), "--model", str(generator_file), "--model", str(generator_file),
            "--box", "8,8,32,24", "--zoom", "2", "-o", str(out)]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert "bicubic" in res.output and "dB" in res.output
    assert Image.open(out).size == (4 * 64 + 3 * GAP, 48 + LABEL_HEIGHT)
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 2 and "exists (use --overwrite" in res.output
    res = CliRunner().invoke(cli, [*args[:-1], str(tmp_path / "b.png"), "--box", "70,0,20,20"])
    assert res.exit_code == 2 and "does not fit" in res.output
