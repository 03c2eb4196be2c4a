"""Training data: HR folders (LR made on the fly) or LR/HR folders paired by file name.

Every sample is a pure function of ``(seed, index)``, so a run gives the same batches whatever
the number of DataLoader workers, and a resumed run continues the exact sequence.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from srgan_runtime.core.errors import ImageError, UserError
from srgan_runtime.core.files import IMAGE_SUFFIXES, list_images
from srgan_runtime.core.imageio import downscale, load_rgb, to_nchw

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImagePair:
    """One training image: its HR file and, for paired data, its LR partner."""

    name: str
    hr: Path
    lr: Path | None = None


def _lr_folder(root: Path, scale: int) -> Path | None:
    for cand in (root / "LR_bicubic" / f"X{scale}", root / "LR" / f"X{scale}", root / "LR",
                 root / "low_res"):
        if cand.is_dir():
            return cand
    return None


def _hr_folder(root: Path) -> Path:
    for cand in (root / "HR", root / "high_res"):
        if cand.is_dir():
            return cand
    return root


def find_pairs(root: Path, scale: int, lr_from_hr: bool = False) -> list[ImagePair]:
    """Resolve a data folder into image pairs.

    Layouts: ``root/HR`` with optional ``root/LR_bicubic/X<s>`` (or ``root/LR``), the seed's
    ``root/high_res`` + ``root/low_res``, or a flat folder of HR images. LR files are matched to
    HR files by stem; a file without its partner is an error, never silently mis-paired.
    """
    root = Path(root)
    if not root.exists():
        raise UserError(f"{root}: data folder does not exist")
    if not root.is_dir():
        raise UserError(f"{root}: not a folder")
    hr_dir = _hr_folder(root)
    hr_files = list_images(hr_dir)
    if not hr_files:
        kinds = ", ".join(sorted(IMAGE_SUFFIXES))
        raise UserError(f"{hr_dir}: no images found (looked for {kinds})")
    lr_dir = None if lr_from_hr else _lr_folder(root, scale)
    if lr_dir is None:
        return [ImagePair(p.stem, p) for p in hr_files]
    lr_by_stem: dict[str, Path] = {}
    for p in list_images(lr_dir):
        if p.stem in lr_by_stem:
            raise UserError(f"{p}: two LR files share the name {p.stem!r}")
        lr_by_stem[p.stem] = p
    hr_stems = {p.stem for p in hr_files}
    for p in hr_files:
        if p.stem not in lr_by_stem:
            raise UserError(f"{p}: no LR partner named {p.stem}.* in {lr_dir}")
    for stem, p in lr_by_stem.items():
        if stem not in hr_stems:
            raise UserError(f"{p}: no HR partner named {stem}.* in {hr_dir}")
    return [ImagePair(p.stem, p, lr_by_stem[p.stem]) for p in hr_files]


def load_pair(pair: ImagePair, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """Decode one pair as ``(lr, hr)`` uint8 arrays with ``hr`` mod-cropped so that
    ``hr.shape == lr.shape * scale`` exactly."""
    hr = load_rgb(pair.hr)
    if pair.lr is None:
        lr = downscale(hr, scale)
    else:
        lr = load_rgb(pair.lr)
        want = (hr.shape[0] // scale, hr.shape[1] // scale)
        if lr.shape[:2] != want:
            raise ImageError(
                pair.lr,
                f"LR is {lr.shape[1]}x{lr.shape[0]}, expected {want[1]}x{want[0]} "
                f"(HR {hr.shape[1]}x{hr.shape[0]} / {scale})",
            )
    h, w = lr.shape[0] * scale, lr.shape[1] * scale
    return lr, np.ascontiguousarray(hr[:h, :w])


def aligned_crop(
    lr: np.ndarray, hr: np.ndarray, lr_patch: int, scale: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Random crop of ``lr_patch`` LR pixels and the exactly aligned HR crop."""
    y = int(rng.integers(0, lr.shape[0] - lr_patch + 1))
    x = int(rng.integers(0, lr.shape[1] - lr_patch + 1))
    hp = lr_patch * scale
    return (
        lr[y : y + lr_patch, x : x + lr_patch],
        hr[y * scale : y * scale + hp, x * scale : x * scale + hp],
    )


def augment(
    arrays: list[np.ndarray], hflip: bool, vflip: bool, transpose: bool
) -> list[np.ndarray]:
    """Apply the same flip/90-degree-rotation to each HxWxC array (8 dihedral variants)."""
    out = []
    for a in arrays:
        if hflip:
            a = a[:, ::-1]
        if vflip:
            a = a[::-1]
        if transpose:
            a = a.transpose(1, 0, 2)
        out.append(np.ascontiguousarray(a))
    return out


@dataclass
class DatasetReport:
    """What happened while scanning the training folders."""

    used: int = 0
    too_small: int = 0
    unreadable: int = 0


class PatchDataset:
    """Map-style dataset of aligned ``(lr, hr)`` float32 CHW patches in [0, 1].

    Index ``i`` draws image ``perm_e[i % n]`` (a per-epoch permutation ``e = i // n``) and a crop
    and augmentation from ``rng(seed, i)``.
    """

    def __init__(
        self,
        pairs: list[ImagePair],
        scale: int,
        patch_size: int,
        *,
        seed: int = 0,
        augment: bool = True,
        cache: bool = True,
    ) -> None:
        if patch_size % scale:
            raise UserError(f"patch size {patch_size} is not a multiple of the scale {scale}")
        self.scale = scale
        self.lr_patch = patch_size // scale
        self.seed = seed
        self.augment = augment
        self.report = DatasetReport()
        self.pairs: list[ImagePair] = []
        self._cache: list[tuple[np.ndarray, np.ndarray]] | None = [] if cache else None
        for pair in pairs:
            try:
                lr, hr = load_pair(pair, scale)
            except ImageError as exc:
                self.report.unreadable += 1
                log.warning("skipping %s", exc)
                continue
            if min(lr.shape[:2]) < self.lr_patch:
                self.report.too_small += 1
                log.warning(
                    "skipping %s: %dx%d is smaller than the %d-pixel patch",
                    pair.hr, hr.shape[1], hr.shape[0], patch_size,
                )
                continue
            self.pairs.append(pair)
            if self._cache is not None:
                self._cache.append((lr, hr))
        self.report.used = len(self.pairs)
        if not self.pairs:
            raise UserError(
                f"no usable training images (of {len(pairs)}: {self.report.too_small} smaller "
                f"than the patch, {self.report.unreadable} unreadable)"
            )

    def __len__(self) -> int:
        return len(self.pairs)

    @lru_cache(maxsize=4)  # noqa: B019 - the dataset lives for the whole run
    def _perm(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch, 0x5EED]).permutation(len(self.pairs))

    def _arrays(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self._cache is not None:
            return self._cache[k]
        return load_pair(self.pairs[k], self.scale)

    def sample(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The uint8 HWC ``(lr, hr)`` patch pair for a global sample index."""
        n = len(self.pairs)
        epoch, pos = divmod(int(index), n)
        k = int(self._perm(epoch)[pos])
        lr, hr = self._arrays(k)
        rng = np.random.default_rng([self.seed, int(index)])
        lr_p, hr_p = aligned_crop(lr, hr, self.lr_patch, self.scale, rng)
        if self.augment:
            h, v, t = (bool(b) for b in rng.integers(0, 2, size=3))
            lr_p, hr_p = augment([lr_p, hr_p], h, v, t)
        return lr_p, hr_p

    def __getitem__(self, index: int):  # -> tuple[torch.Tensor, torch.Tensor]
        import torch

        lr, hr = self.sample(index)

        return torch.from_numpy(to_nchw(lr)[0]), torch.from_numpy(to_nchw(hr)[0])


def make_loader(
    dataset: PatchDataset, batch_size: int, start_step: int, total_steps: int, workers: int,
    pin_memory: bool = False, rank: int = 0, world: int = 1,
):
    """A DataLoader over sample indices ``[start_step*B, total_steps*B)``: resumable by step.
    With ``world`` > 1, rank ``rank``'s share of each global batch of ``batch_size``
    (:func:`srgan_train.distributed.shard_indices`)."""
    import torch
    from torch.utils.data import DataLoader

    # A private generator: otherwise creating the iterator draws from the global RNG (its worker
    # base seed), and a resumed run would see different dropout masks from then on.
    gen = torch.Generator().manual_seed(dataset.seed)
    if world > 1:
        from .distributed import shard_indices

        indices = shard_indices(start_step, total_steps, batch_size, rank, world)
        batch_size //= world
    else:
        indices = range(start_step * batch_size, total_steps * batch_size)
    return DataLoader(
        dataset,  # type: ignore[arg-type]
        batch_size=batch_size,
        sampler=indices,
        num_workers=workers,
        drop_last=False,
        persistent_workers=False,
        pin_memory=pin_memory,
        generator=gen,
    )
