"""Procedural test images (edges, gratings, smooth fields, shapes), for demos and tests that
must run without the shared data sets."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .imageio import save_png


def texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """One HxWx3 uint8 image mixing a smooth colour field, a grating and hard-edged shapes."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    img = np.zeros((height, width, 3))
    # Smooth colour field: a few random low-frequency cosines per channel.
    for c in range(3):
        for _ in range(3):
            fy, fx = rng.uniform(0.002, 0.02, size=2)
            ph = rng.uniform(0, 2 * np.pi)
            img[..., c] += np.cos(2 * np.pi * (fy * yy + fx * xx) + ph)
    img = 0.5 + 0.12 * img
    # A grating with a random orientation and frequency (fine detail that bicubic blurs).
    theta = rng.uniform(0, np.pi)
    freq = rng.uniform(0.04, 0.15)
    grating = np.sin(2 * np.pi * freq * (np.cos(theta) * xx + np.sin(theta) * yy))
    mask = (xx + yy * rng.uniform(0.2, 1.0)) < rng.uniform(0.3, 0.8) * (width + height)
    img += 0.18 * grating[..., None] * mask[..., None]
    # Hard-edged discs and bars in random colours.
    for _ in range(int(rng.integers(3, 8))):
        colour = rng.uniform(0, 1, size=3)
        if rng.random() < 0.5:
            cy, cx = rng.uniform(0, height), rng.uniform(0, width)
            r = rng.uniform(0.05, 0.25) * min(height, width)
            m = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
        else:
            y0, x0 = rng.uniform(0, height), rng.uniform(0, width)
            m = (np.abs(yy - y0) < rng.uniform(2, 12)) & (xx > x0) & (xx < x0 + width / 2)
        img[m] = 0.35 * img[m] + 0.65 * colour
    img += rng.normal(0, 0.01, size=img.shape)
    return np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)


def write_textures(folder: Path, count: int, size: tuple[int, int] = (192, 256),
                   seed: int = 0) -> list[Path]:
    """Write ``count`` procedural PNG images named ``tex_###.png`` into ``folder``."""
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        p = folder / f"tex_{i:03d}.png"
        save_png(texture(rng, size[0], size[1]), p)
        paths.append(p)
    return paths


def _main(argv: list[str] | None = None) -> None:
    """``python -m srgan_runtime.core.synth FOLDER [--count N] [--size HxW] [--seed S]``: the
    test images of ``make demo``, without torch (``srtrain synth`` writes the same)."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m srgan_runtime.core.synth")
    ap.add_argument("folder", type=Path)
    ap.add_argument("--count", type=int, default=1)
    ap.add_argument("--size", default="192x256", help="HxW of each image")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    try:
        h, w = (int(v) for v in a.size.lower().split("x"))
    except ValueError:
        ap.error(f"--size {a.size!r}: expected HxW, e.g. 240x320")
    if a.count < 1 or min(h, w) < 8:
        ap.error("--count must be >= 1 and each side of --size >= 8")
    try:
        paths = write_textures(a.folder, a.count, (h, w), a.seed)
    except OSError as exc:
        ap.exit(2, f"{ap.prog}: error: {a.folder}: {exc.strerror or exc}\n")
    for path in paths:
        print(path)


if __name__ == "__main__":
    _main()
