"""Bugs that came from one idea written in several places, each pinned to the single table it
now derives from: every model format reaches every command's error path, and every image
format the toolkit writes is offered by ``--format``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from srgan_runtime.core.imageio import FORMATS
from srgan_runtime.core.modelinfo import MODEL_FORMATS, format_of, resolve_weights

NOT_TORCH = [(f.name, s) for f in MODEL_FORMATS.values() if not f.torch_weights
             for s in f.suffixes]


def _cli(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize(("name", "suffix"), NOT_TORCH)
def test_every_format_without_torch_weights_is_refused_in_one_line(name: str, suffix: str,
                                                                   tmp_path: Path) -> None:
    """``resolve_weights`` used a hand-written {format: noun} dict that missed 'aoti'."""
    path = tmp_path / f"model{suffix}"
    path.write_bytes(b"not read: the suffix decides")
    assert format_of(path).name == name
    with pytest.raises(Exception) as exc:
        resolve_weights(path)
    assert type(exc.value).__name__ == "UserError"
    assert MODEL_FORMATS[name].noun in str(exc.value)


@pytest.mark.parametrize("command", [
    ("srgan_export.cli", "onnx", "{model}", "-o", "{out}"),
    ("srgan_train.cli", "eval", "{model}", "--data", "{out}"),
], ids=["srexport-onnx", "srtrain-eval"])
def test_a_pt2_package_where_weights_are_needed_is_one_clear_line(command: tuple[str, ...],
                                                                  tmp_path: Path) -> None:
    model = tmp_path / "x.pt2"
    model.write_bytes(b"PK")
    module, *args = command
    args = [a.format(model=model, out=tmp_path / "out.onnx") for a in args]
    r = _cli(module, *args)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "internal error" not in r.stderr, r.stderr
    assert "x.pt2: an AOTInductor package" in lines[0]


def test_unknown_model_suffix_lists_every_format_in_the_table(tmp_path: Path) -> None:
    path = tmp_path / "model.xyz"
    path.write_bytes(b"")
    with pytest.raises(Exception) as exc:
        format_of(path)
    for fmt in MODEL_FORMATS.values():
        for suffix in fmt.suffixes:
            assert suffix in str(exc.value)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_every_written_format_is_offered_by_srrun_format(fmt: str, tmp_path: Path) -> None:
    """``--format`` offered png/jpg/webp while tif and bmp were read and written too."""
    src = tmp_path / "in.png"
    Image.linear_gradient("L").resize((24, 20)).convert("RGB").save(src)
    r = _cli("srgan_runtime.cli", "upscale", str(src), "-o", str(tmp_path / "out") + "/",
             "--format", fmt, "--no-progress")
    assert r.returncode == 0, r.stderr
    (written,) = (tmp_path / "out").iterdir()
    assert written.suffix == f".{fmt}"
    with Image.open(written) as im:
        assert im.format == FORMATS[fmt] and im.size == (96, 80)


def test_a_new_model_format_is_one_reader_and_one_row(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Detection, ``describe``, the refusal where weights are needed and the unknown-suffix
    message all follow the table: nothing else names the formats."""
    from srgan_runtime.core.modelinfo import ModelFormat, ModelInfo, describe

    def read_toy(path: Path, scale: int | None) -> ModelInfo:
        return ModelInfo(scale=3, format="toy", arch="toy-net", precision="fp16")

    monkeypatch.setitem(MODEL_FORMATS, "toy", ModelFormat(
        "toy", (".toy",), "a toy model", read_toy, made_by="the toy exporter"))
    path = tmp_path / "m.toy"
    path.write_bytes(b"toy")
    info = describe(path)
    assert (info.format, info.scale, info.arch, info.precisions) == ("toy", 3, "toy-net",
                                                                      ("fp16",))
    with pytest.raises(Exception, match="a toy model made by 'the toy exporter'"):
        resolve_weights(path)
    with pytest.raises(Exception, match=r"\.toy"):
        format_of(tmp_path / "m.unknown")


@pytest.mark.parametrize(("args", "message"), [
    (["--size", "abc"], "--size 'abc': expected HxW"),
    (["--size", "2x2"], "each side of --size >= 8"),
    (["--count", "0"], "--count must be >= 1"),
])
def test_make_demo_image_writer_refuses_bad_options_in_one_line(args: list[str], message: str,
                                                                tmp_path: Path) -> None:
    r = _cli("srgan_runtime.core.synth", str(tmp_path / "d"), *args)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr


def test_make_demo_image_writer_names_an_unwritable_folder(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = _cli("srgan_runtime.core.synth", str(blocker / "d"))
    assert r.returncode == 2 and f"{blocker / 'd'}:" in r.stderr and "Traceback" not in r.stderr
