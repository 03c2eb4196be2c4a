"""Reading and writing images for upscaling, keeping what users care about: alpha, grey, 16-bit
depth, EXIF orientation, ICC profile and EXIF data.

Pillow does the work, except for 16-bit-per-channel colour, which Pillow cannot hold (16-bit PNGs
are read through pypng, TIFFs through tifffile), and PNG writing, which streams strips through
:mod:`.pngwrite` instead of copying the whole picture. Everything is numpy: colour ``HxWx3``
(or ``HxW`` grey) and alpha ``HxW``, uint8 or uint16. Float images (0..1) become 16-bit; 32-bit
integer images are read as 16-bit when their values fit, else refused; animated images are
skipped with a reason.
"""

from __future__ import annotations

import contextlib
import io
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageError, SkippedImage
from .files import atomic_write, exists_message

FORMATS = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "webp": "WEBP", "tif": "TIFF",
           "tiff": "TIFF", "bmp": "BMP"}


@dataclass(frozen=True)
class Picture:
    """A decoded image: ``colour`` is HxWx3 (RGB) or HxW (grey); ``alpha`` HxW or None; both
    uint8 or both uint16."""

    colour: np.ndarray
    alpha: np.ndarray | None = None
    icc_profile: bytes | None = None
    exif: bytes | None = None
    notes: tuple[str, ...] = ()  # what decoding changed that a user should hear about

    @property
    def height(self) -> int:
        return int(self.colour.shape[0])

    @property
    def width(self) -> int:
        return int(self.colour.shape[1])

    @property
    def grey(self) -> bool:
        return self.colour.ndim == 2

    @property
    def bits(self) -> int:
        return 16 if self.colour.dtype == np.uint16 else 8

    @classmethod
    def from_array(cls, arr: np.ndarray) -> Picture:
        """From an HxW, HxWx1, HxWx3 or HxWx4 uint8/uint16 array (RGB order)."""
        arr = np.asarray(arr)
        if arr.dtype not in (np.uint8, np.uint16):
            raise ValueError(f"expected uint8 or uint16 pixels, got {arr.dtype}")
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[..., 0]
        if arr.ndim == 2:
            return cls(arr)
        if arr.ndim == 3 and arr.shape[2] in (2, 4):
            colour = arr[..., 0] if arr.shape[2] == 2 else arr[..., :3]
            return cls(np.ascontiguousarray(colour), np.ascontiguousarray(arr[..., -1]))
        if arr.ndim == 3 and arr.shape[2] == 3:
            return cls(arr)
        raise ValueError(f"expected HxW or HxWxC with C in 1..4, got shape {arr.shape}")

    def to_array(self) -> np.ndarray:
        if self.alpha is None:
            return self.colour
        colour = self.colour[..., None] if self.grey else self.colour
        return np.concatenate([colour, self.alpha[..., None]], axis=2)


def _png_is_16bit_colour(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(26)
    if len(head) < 26 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return False
    bit_depth, colour_type = head[24], head[25]
    return bit_depth == 16 and colour_type in (2, 6)  # RGB, RGBA


def _read_png16(path: Path) -> Picture:
    import png

    reader = png.Reader(filename=str(path))
    w, h, rows, info = reader.asDirect()
    planes = info["planes"]
    arr = np.vstack([np.asarray(r, dtype=np.uint16) for r in rows]).reshape(h, w, planes)
    return Picture.from_array(arr)


def picture_from_pil(im: Image.Image) -> Picture:
    """A Pillow image as a :class:`Picture` (EXIF orientation applied, ICC and EXIF kept).
    Raises ValueError for pixel values that have no defined 8/16-bit meaning."""
    icc = im.info.get("icc_profile")
    exif = im.info.get("exif")
    im = ImageOps.exif_transpose(im)  # upright pixels; orientation tag reset below on save
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L"):
        return Picture(np.asarray(im, dtype=np.uint16).copy(), None, icc, exif)
    if mode == "I":
        return Picture(_int32_to_uint16(np.asarray(im)), None, icc, exif)
    if mode == "F":
        colour, notes = _float_to_uint16(np.asarray(im, dtype=np.float32))
        return Picture(colour, None, icc, exif, notes)
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif mode in ("1", "L"):
        im = im.convert("L")
    elif mode == "PA":
        im = im.convert("RGBA")
    elif mode not in ("RGB", "RGBA", "LA"):
        im = im.convert("RGBA" if "A" in mode else "RGB")
    pic = Picture.from_array(np.asarray(im, dtype=np.uint8).copy())
    return replace(pic, icc_profile=icc, exif=exif)


def _int32_to_uint16(arr: np.ndarray) -> np.ndarray:
    """32-bit integer pixels (Pillow mode ``I``) as 16-bit: the only depth an integer image
    can keep here. Values outside 0..65535 have no defined meaning at 16 bits: refused."""
    lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
    if lo < 0 or hi > 65535:
        raise ValueError(f"32-bit integer pixels range {lo}..{hi}, beyond 16 bits (0..65535); "
                         "convert it to 8 or 16 bits first")
    return arr.astype(np.uint16)


FLOAT_SLACK = 1e-3  # float images a hair outside 0..1 (rounding in the tool that wrote them)


def _float_to_uint16(arr: np.ndarray) -> tuple[np.ndarray, tuple[str, ...]]:
    """Float pixels are taken as 0..1 (the common convention, as in OpenEXR-free float TIFFs)
    and kept at 16 bits; NaN/Inf or values clearly outside 0..1 are refused rather than
    guessed at."""
    if not np.isfinite(arr).all():
        raise ValueError("float pixels hold NaN or infinity")
    lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
    if lo < -FLOAT_SLACK or hi > 1 + FLOAT_SLACK:
        raise ValueError(f"float pixels range {lo:g}..{hi:g}, not 0..1; convert it to 8 or 16 "
                         "bits (or scale it to 0..1) first")
    out = np.rint(np.clip(arr, 0.0, 1.0) * 65535.0).astype(np.uint16)
    return out, ("float image (0..1) upscaled as 16-bit",)


_pillow_limit_lock = threading.Lock()


@contextlib.contextmanager
def _pillow_pixel_limit(max_pixels: int | None) -> Iterator[None]:
    """Hand Pillow's decompression-bomb limit to ``max_pixels`` while opening: Pillow otherwise
    refuses anything over 2 x 89 MP whatever ``--max-pixels`` says. Opening reads only the
    header; :func:`load_image` checks the size against ``max_pixels`` before decoding."""
    if max_pixels is None:
        yield
        return
    with _pillow_limit_lock:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _tiff_16bit_colour(im: Image.Image) -> bool:
    """A TIFF with 16-bit samples and 3 or 4 channels, which Pillow reads as 8-bit RGB."""
    if im.format != "TIFF":
        return False
    tags = getattr(im, "tag_v2", {})
    bits = tags.get(258)  # BitsPerSample
    bits = tuple(bits) if isinstance(bits, tuple | list) else (bits,)
    samples = tags.get(277, 1)  # SamplesPerPixel
    return samples in (3, 4) and bool(bits) and all(b == 16 for b in bits)


def _read_tiff16(path: Path) -> Picture:
    import tifffile

    with tifffile.TiffFile(str(path)) as tif:
        page = tif.pages[0]
        arr = page.asarray()
        icc = page.tags.get(34675)
    if arr.dtype != np.uint16 or arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"unexpected 16-bit TIFF layout {arr.shape} {arr.dtype}")
    pic = Picture.from_array(np.ascontiguousarray(arr))
    return replace(pic, icc_profile=bytes(icc.value) if icc is not None else None)


def load_image(path: Path, max_pixels: int | None = None,
               check_size: Callable[[int, int], str | None] | None = None) -> Picture:
    """Decode an image file; raises :class:`ImageError` naming the file on any problem,
    including images larger than ``max_pixels`` (decompression bombs) or refused by
    ``check_size(width, height)`` (called before decoding), and :class:`SkippedImage` for
    animated or multi-page images."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(path, "no such file" if not path.exists() else "not a file")
    try:
        with _pillow_pixel_limit(max_pixels), Image.open(path) as im:
            w, h = im.size
            if max_pixels is not None and w * h > max_pixels:
                raise ImageError(path, f"{w}x{h} = {w * h} pixels is over --max-pixels "
                                       f"{max_pixels}")
            problem = check_size(w, h) if check_size is not None else None
            if problem:
                raise ImageError(path, problem)
            frames = getattr(im, "n_frames", 1)
            if frames > 1:
                kind = "multi-page" if im.format == "TIFF" else "animated"
                raise SkippedImage(path, f"{kind} image ({frames} frames): only still images "
                                         "are upscaled; extract the frame you want first")
            if im.format == "PNG" and _png_is_16bit_colour(path):
                # Pillow reads the metadata; pypng the 16-bit pixels it cannot hold.
                return replace(_read_png16(path), exif=im.info.get("exif"),
                               icc_profile=im.info.get("icc_profile"))
            if _tiff_16bit_colour(im):
                try:
                    return _read_tiff16(path)
                except Exception as exc:  # e.g. LZW needs imagecodecs: fall back to 8 bits
                    im.load()
                    note = (f"16-bit colour TIFF read as 8-bit ({type(exc).__name__}: "
                            f"{exc}; 'pip install imagecodecs' reads every TIFF compression)")
                    return replace(picture_from_pil(im), notes=(note,))
            im.load()
            return picture_from_pil(im)
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageError(path, f"refused as a decompression bomb ({exc})") from None
    except UnidentifiedImageError:
        raise ImageError(path, "not an image file Pillow can read") from None
    except (OSError, ValueError, SyntaxError, struct.error) as exc:
        raise ImageError(path, f"corrupt, truncated or unusable image ({exc})") from None
    except Exception as exc:  # pypng's errors and other decoder failures
        raise ImageError(path, f"cannot decode ({type(exc).__name__}: {exc})") from None


def _exif_upright(exif: bytes | None) -> bytes | None:
    """EXIF with the orientation tag reset: the pixels were already turned upright."""
    if not exif:
        return None
    try:
        e = Image.Exif()
        e.load(exif)
        e[0x0112] = 1
        return e.tobytes()
    except Exception:
        return None


PNG_LEVEL = 1  # OpenCV's default; on Set14 outputs ~6x faster to encode than 6, ~14% larger


SIXTEEN_BIT_FORMATS = frozenset({"PNG", "TIFF"})
ALPHA_FORMATS = frozenset({"PNG", "TIFF", "WEBP"})


def output_problem(pic: Picture, fmt: str) -> str | None:
    """Why ``pic`` cannot be written as ``fmt`` at all (checked before any compute), or None."""
    kind = FORMATS.get(fmt.lower())
    if kind is None:
        return f"unknown output format {fmt!r} (choose from {', '.join(sorted(FORMATS))})"
    if pic.alpha is not None and kind not in ALPHA_FORMATS:
        return f"{fmt} cannot store the alpha channel (use png, webp or tif)"
    return None


def output_notes(pic: Picture, fmt: str) -> list[str]:
    """What writing ``pic`` as ``fmt`` loses, said once per file."""
    if pic.bits == 16 and FORMATS.get(fmt.lower()) not in SIXTEEN_BIT_FORMATS:
        return [f"16-bit input written as 8-bit {fmt} (png and tif keep 16 bits)"]
    return []


def write_image(pic: Picture, dest: Path | io.BytesIO, fmt: str, quality: int = 95,
                png_level: int = PNG_LEVEL) -> None:
    """Encode ``pic`` as ``fmt`` (png, jpg, webp, tif, bmp) into a file or buffer, keeping ICC
    and EXIF where the format allows. 16-bit pictures stay 16-bit in PNG and TIFF and are
    rounded to 8 bits for the other formats (:func:`output_notes` says so)."""
    fmt = fmt.lower()
    problem = output_problem(pic, fmt)
    if problem:
        raise ValueError(problem)
    if pic.bits == 16 and FORMATS[fmt] not in SIXTEEN_BIT_FORMATS:
        pic = to_8bit(pic)
    if pic.bits == 16 and FORMATS[fmt] == "TIFF":
        _write_tiff16(pic, dest)
        return
    exif = _exif_upright(pic.exif)
    if FORMATS[fmt] == "PNG":  # streamed: no whole-picture copy (core.pngwrite)
        from .pngwrite import write_png

        if exif and exif.startswith(b"Exif\x00\x00"):
            exif = exif[6:]  # PNG's eXIf holds the TIFF structure only
        with contextlib.ExitStack() as stack:
            f = dest if isinstance(dest, io.BytesIO) else stack.enter_context(open(dest, "wb"))
            write_png(f, pic.to_array(), png_level, pic.icc_profile, exif)
        return
    im = Image.fromarray(pic.to_array())  # L, I;16, LA, RGB, RGBA
    kwargs: dict = {}
    if pic.icc_profile:
        kwargs["icc_profile"] = pic.icc_profile
    if exif and FORMATS[fmt] in ("JPEG", "WEBP", "TIFF"):
        kwargs["exif"] = exif
    if FORMATS[fmt] in ("JPEG", "WEBP"):
        kwargs["quality"] = quality
    im.save(dest, format=FORMATS[fmt], **kwargs)


def to_8bit(pic: Picture) -> Picture:
    """A 16-bit picture rounded to 8 bits (x / 257, the exact inverse of 8 -> 16 bit)."""
    if pic.bits == 8:
        return pic

    def down(a: np.ndarray | None) -> np.ndarray | None:
        return None if a is None else np.rint(a / 257.0).astype(np.uint8)

    return replace(pic, colour=down(pic.colour), alpha=down(pic.alpha))


def _write_tiff16(pic: Picture, dest: Path | io.BytesIO) -> None:
    """16-bit TIFF (grey or RGB, with unassociated alpha), deflate-compressed, ICC kept."""
    import tifffile

    arr = pic.to_array()
    photometric = "minisblack" if pic.grey else "rgb"
    extras = ["unassalpha"] if pic.alpha is not None else None
    target = dest if isinstance(dest, io.BytesIO) else str(dest)
    tifffile.imwrite(target, arr, photometric=photometric, extrasamples=extras,
                     compression="zlib", iccprofile=pic.icc_profile or None)


def encode_image(pic: Picture, fmt: str, quality: int = 95, png_level: int = PNG_LEVEL) -> bytes:
    """``write_image`` into bytes."""
    buf = io.BytesIO()
    write_image(pic, buf, fmt, quality, png_level)
    return buf.getvalue()


def save_image(pic: Picture, path: Path, fmt: str | None = None, quality: int = 95,
               overwrite: bool = False, png_level: int = PNG_LEVEL) -> None:
    """Encode straight into a temporary file beside ``path``, then rename it into place; an
    existing file is kept unless ``overwrite``."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(exists_message(path))
    fmt = fmt or path.suffix.lstrip(".").lower() or "png"
    atomic_write(path, lambda tmp: write_image(pic, tmp, fmt, quality, png_level))


def to_nchw(images: np.ndarray) -> np.ndarray:
    """NHWC (or one HWC) integer or float pixels -> contiguous NCHW float32 in [0, 1]."""
    arr = np.asarray(images)
    if arr.ndim == 3:
        arr = arr[None]
    peak = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(arr.dtype, 1.0)
    out = arr.transpose(0, 3, 1, 2).astype(np.float32)
    if peak != 1.0:
        out *= np.float32(1.0 / peak)
    return np.ascontiguousarray(out)


def load_rgb(path: Path) -> np.ndarray:
    """Read an image file as HxWx3 uint8 RGB (grey expanded, alpha dropped, 16 bits rounded to
    8), through :func:`load_image`; raises :class:`ImageError` naming the file."""
    pic = to_8bit(load_image(path))
    return np.repeat(pic.colour[..., None], 3, axis=2) if pic.grey else pic.colour


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


def save_png(img: np.ndarray, path: Path) -> None:
    """Write an RGB/grey uint8 array as PNG, atomically."""
    atomic_write(Path(path), lambda tmp: Image.fromarray(img).save(tmp, format="PNG"))


# --- finishing an upscaled picture ----------------------------------------------------------------

def finish_picture(src: Picture, canvas: np.ndarray, scale: int, out_size: tuple[int, int],
                   alpha_canvas: np.ndarray | None = None) -> Picture:
    """The result for ``src`` from the model's RGB ``canvas`` (padding cropped): grey inputs
    stay grey, alpha comes from ``alpha_canvas`` (alpha run through the model) or is resized
    bicubically, colour profile and EXIF are kept, and the picture is resized (Lanczos) to
    ``out_size`` where that differs from ``scale`` times the input."""
    h, w = src.height * scale, src.width * scale
    colour = canvas[:h, :w]
    if src.grey:
        colour = np.rint(colour.astype(np.float32).mean(axis=2)).astype(src.colour.dtype)
    alpha = None
    if src.alpha is not None:
        if alpha_canvas is not None:
            a = alpha_canvas[:h, :w].astype(np.float32).mean(axis=2)
            alpha = np.rint(a).astype(src.alpha.dtype)
        else:
            alpha = resize_plane(src.alpha, w, h)
    out = Picture(np.ascontiguousarray(colour), alpha, src.icc_profile, src.exif)
    if tuple(out_size) != (w, h):
        out = resize_picture(out, *out_size)
    return out


def resize_plane(plane: np.ndarray, width: int, height: int,
                 method=Image.Resampling.BICUBIC) -> np.ndarray:
    """Resize one HxW plane: 8-bit natively in Pillow, 16-bit in float (Pillow's 16-bit
    integer mode has no cubic filter)."""
    if plane.dtype == np.uint8:
        return np.asarray(Image.fromarray(plane).resize((width, height), method))
    peak = 65535.0
    im = Image.fromarray(plane.astype(np.float32), mode="F").resize((width, height), method)
    return np.clip(np.rint(np.asarray(im)), 0, peak).astype(plane.dtype)


def resize_picture(pic: Picture, width: int, height: int) -> Picture:
    """Lanczos resize after the model (``--outscale``), channel by channel."""
    lanczos = Image.Resampling.LANCZOS
    if pic.grey:
        colour = resize_plane(pic.colour, width, height, lanczos)
    elif pic.bits == 8:
        colour = np.asarray(Image.fromarray(pic.colour).resize((width, height), lanczos))
    else:
        colour = np.stack([resize_plane(pic.colour[..., c], width, height, lanczos)
                           for c in range(3)], axis=2)
    alpha = None if pic.alpha is None else resize_plane(pic.alpha, width, height, lanczos)
    return replace(pic, colour=colour, alpha=alpha)
