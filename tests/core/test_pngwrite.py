"""The streaming PNG encoder: exact round trips through Pillow and pypng, every filter, metadata
chunks, and working memory bounded by the strip size rather than the picture's size."""

from __future__ import annotations

import io
import tracemalloc

import numpy as np
import pytest
from PIL import Image

from srgan_runtime.core import pngwrite
from srgan_runtime.core.pngwrite import write_png


def _decode16(data: bytes) -> np.ndarray:
    import png

    w, h, rows, info = png.Reader(bytes=data).read()
    planes = info["planes"]
    return np.vstack([np.asarray(r, np.uint16) for r in rows]).reshape(h, w, planes)


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_round_trip_is_exact(channels: int, dtype, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pngwrite, "STRIP_BYTES", 700)  # many strips, odd boundaries
    rng = np.random.default_rng(channels)
    peak = 255 if dtype == np.uint8 else 65535
    smooth = np.linspace(0, peak, 37 * 53).reshape(37, 53, 1)
    arr = np.concatenate([smooth, rng.integers(0, peak + 1, (37, 53, channels - 1))], axis=2)
    arr = arr.astype(dtype)
    if channels == 1:
        arr = arr[..., 0]
    buf = io.BytesIO()
    write_png(buf, arr, level=1)
    data = buf.getvalue()
    if dtype == np.uint8:
        back = np.asarray(Image.open(io.BytesIO(data)))
    else:
        back = _decode16(data)
        if channels == 1:
            back = back[..., 0]
    assert back.dtype == arr.dtype and np.array_equal(back, arr)


def test_every_filter_is_chosen_somewhere_and_decodes() -> None:
    """Rows built so that None, Sub, Up, Average and Paeth each win for some row."""
    x = np.arange(64, dtype=np.int64)
    rows = [np.zeros(64), (x * 3) % 256, (x * 3) % 256, np.full(64, 77),
            (x * 5 + 11) % 256, (x * x) % 251, ((x // 4) * 40) % 256]
    rng = np.random.default_rng(0)
    arr = np.stack(rows + [rng.integers(0, 256, 64) for _ in range(4)]).astype(np.uint8)
    out = pngwrite._filtered(arr, np.zeros(64, np.uint8), 1)
    assert len(set(out[:, 0].tolist())) >= 4
    buf = io.BytesIO()
    write_png(buf, arr)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(buf.getvalue()))), arr)


def test_icc_and_exif_are_written() -> None:
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x010F] = "maker"
    buf = io.BytesIO()
    write_png(buf, np.zeros((4, 5, 3), np.uint8), icc_profile=icc, exif=exif.tobytes()[6:])
    with Image.open(io.BytesIO(buf.getvalue())) as im:
        assert im.info["icc_profile"] == icc
        assert im.getexif()[0x010F] == "maker"


def test_refuses_what_png_cannot_hold() -> None:
    for bad in (np.zeros((2, 2, 5), np.uint8), np.zeros((2, 2), np.float32),
                np.zeros((0, 3), np.uint8)):
        with pytest.raises(ValueError, match="cannot write"):
            write_png(io.BytesIO(), bad)


def test_working_memory_does_not_grow_with_the_picture() -> None:
    """A 48 MB picture is encoded with a few MB of extra memory (Pillow copies it whole)."""
    class Sink:  # a file that keeps nothing
        size = 0

        def write(self, b: bytes) -> None:
            self.size += len(b)

    arr = np.random.default_rng(1).integers(0, 256, (4000, 4000, 3), dtype=np.uint8)
    sink = Sink()
    tracemalloc.start()
    try:
        write_png(sink, arr, level=0)
        _, extra = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"picture {arr.nbytes / 2**20:.0f} MB, encoder peak {extra / 2**20:.1f} MB")
    assert sink.size > arr.nbytes  # level 0 stores
    assert extra < 40 * pngwrite.STRIP_BYTES
