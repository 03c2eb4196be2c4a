"""Image file helpers on Pillow and numpy: safe loading to RGB, bicubic resizing, atomic writes."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import ImageError, UserError

# Read as inputs (GIF: still images; animated ones are skipped with a reason by srrun).
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif"})


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name (hidden files ignored)."""
    return sorted(
        p
        for p in Path(folder).iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )


def load_rgb(path: Path) -> np.ndarray:
    """Read an image file as an HxWx3 uint8 RGB array.

    Grey, palette, RGBA/LA (alpha dropped) and 16-bit grey images are converted; anything
    unreadable raises :class:`ImageError` naming the file.
    """
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            return pil_to_rgb_array(im)
    except FileNotFoundError:
        raise ImageError(path, "no such file") from None
    except UnidentifiedImageError:
        raise ImageError(path, "not an image file Pillow can read") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageError(path, f"corrupt or truncated image ({exc})") from None


def pil_to_rgb_array(im: Image.Image) -> np.ndarray:
    """Convert any Pillow image to HxWx3 uint8 RGB."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.float64)
        # 16-bit modes are 16-bit by definition; only 32-bit "I" needs a guess at its range.
        sixteen = im.mode != "I" or arr.max(initial=0) > 255
        peak = 65535.0 if sixteen else 255.0
        grey = np.clip(np.rint(arr / peak * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode != "RGB":
        im = im.convert("RGB")
    return np.asarray(im, dtype=np.uint8).copy()


def resize_bicubic(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """Pillow BICUBIC resize of an HxWx3 uint8 array (antialiased when downscaling).

    Pillow's antialiased cubic (a = -0.5) is within about 0.01 dB of MATLAB ``imresize`` on the
    standard bicubic baselines.
    """
    out = Image.fromarray(img).resize((width, height), Image.Resampling.BICUBIC)
    return np.asarray(out, dtype=np.uint8)


def downscale(hr: np.ndarray, scale: int) -> np.ndarray:
    """Standard degradation: ``imresize(modcrop(hr, scale), 1/scale)`` with Pillow bicubic."""
    h, w = hr.shape[0] // scale, hr.shape[1] // scale
    if h < 1 or w < 1:
        raise ValueError(f"image {hr.shape[1]}x{hr.shape[0]} is smaller than the scale {scale}")
    return resize_bicubic(hr[: h * scale, : w * scale], w, h)


def upscale_bicubic(lr: np.ndarray, scale: int) -> np.ndarray:
    """The bicubic baseline: Pillow bicubic upscaling by ``scale``."""
    return resize_bicubic(lr, lr.shape[1] * scale, lr.shape[0] * scale)


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it into place,
    so readers never see a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:  # name the folder the user chose, not our temp file
        raise OSError(exc.errno, f"cannot write here ({exc.strerror})", str(path.parent)) from None
    os.close(fd)
    try:
        write(Path(tmp))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 is not what a user expects of outputs
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def folder_problem(folder: Path) -> str | None:
    """Why files cannot be written into ``folder`` (missing folders are created on demand),
    or None: checked before any work, so that no result is computed only to be lost."""
    p = Path(folder)
    while not p.exists() and p.parent != p:
        p = p.parent
    if p.exists() and not p.is_dir():
        return f"cannot write into {folder}: {p} is a file, not a folder"
    if p.exists() and not os.access(p, os.W_OK | os.X_OK):
        return f"cannot write into {folder}: permission denied"
    return None


def check_output_file(path: Path, what: str = "output file", overwrite: bool = True) -> None:
    """Refuse, before any work, an output file that could not be written afterwards: a
    folder's name, a path inside a file, an unwritable folder, or (without ``overwrite``) an
    existing file."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a folder, not a {what} name")
    if path.exists() and not overwrite:
        raise UserError(f"{path}: exists (use --overwrite to replace it)")
    problem = folder_problem(path.parent)
    if problem:
        raise UserError(f"{path}: {problem}")


def save_png(img: np.ndarray, path: Path) -> None:
    """Write an RGB/grey uint8 array as PNG, atomically."""
    atomic_write(Path(path), lambda tmp: Image.fromarray(img).save(tmp, format="PNG"))


def iter_readable(paths: Iterable[Path]) -> Iterator[tuple[Path, np.ndarray | ImageError]]:
    """Yield ``(path, array)`` for each readable image and ``(path, ImageError)`` for the others."""
    for p in paths:
        try:
            yield p, load_rgb(p)
        except ImageError as exc:
            yield p, exc


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
