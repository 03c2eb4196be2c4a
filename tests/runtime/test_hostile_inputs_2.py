"""Hostile but realistic input, second round (issue 24): one test per defect, named after the
behaviour. The web page's defects (real photos, spooled uploads, idle sockets, Ctrl-C) are in
test_serve_limits.py. Anything that could hang runs under a timeout."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from srgan_runtime.core.errors import UserError

SRRUN = [sys.executable, "-m", "srgan_runtime.cli"]


def srrun(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    r = subprocess.run([*SRRUN, *args], capture_output=True, text=True, timeout=timeout)
    assert "Traceback" not in r.stderr, r.stderr
    return r


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "in.png"
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(path)
    return path


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- 4: --ray HOST:PORT with nothing listening ----------------------------------------------

def test_ray_address_with_nothing_listening_is_refused_before_ray_init(monkeypatch) -> None:
    pytest.importorskip("ray", reason="the [ray] extra is not installed")
    import ray

    from srgan_runtime.raybatch import RaySettings, _connect

    def never(*_a, **_k):
        raise AssertionError("ray.init was called for an address nothing listens on")

    monkeypatch.setattr(ray, "init", never)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    port = _closed_port()
    t0 = time.monotonic()
    with pytest.raises(UserError, match=f"127.0.0.1:{port}: cannot reach a Ray cluster"):
        _connect(RaySettings(f"127.0.0.1:{port}"))
    assert time.monotonic() - t0 < 10
    with pytest.raises(UserError, match="expected HOST:PORT"):
        _connect(RaySettings("127.0.0.1:notaport"))


def test_srrun_ray_host_port_with_nothing_listening_is_one_line(photo: Path,
                                                                tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="the [ray] extra is not installed")
    port = _closed_port()
    t0 = time.monotonic()
    r = srrun("upscale", str(photo), "-o", str(tmp_path / "out.png"), "--ray",
              f"127.0.0.1:{port}", timeout=90)
    assert r.returncode == 2, r.stderr
    assert time.monotonic() - t0 < 60
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert lines[-1].startswith("srrun: error: --ray 127.0.0.1:") and "cannot reach" in lines[-1]
    assert not any("WARNING" in ln and "ray" in ln.lower() for ln in lines), r.stderr


# --- 5: --batch 0 ---------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["0", "-3"])
def test_batch_below_one_is_refused_before_the_model_is_opened(photo: Path, tmp_path: Path,
                                                               value: str) -> None:
    r = srrun("upscale", str(photo), "-o", str(tmp_path / "out.png"), "--batch", value,
              "--model", str(tmp_path / "no-such-model.safetensors"))
    assert r.returncode == 2 and "--batch >= 1" in r.stderr, r.stderr
    assert not (tmp_path / "out.png").exists()


def test_upscaler_refuses_batch_zero() -> None:
    from srgan_runtime.upscaler import Upscaler

    with pytest.raises(UserError, match="--batch >= 1"):
        Upscaler("default", batch=0)


# --- 7: the memory budget for an ONNX file without this toolkit's metadata -------------------

def test_memory_budget_applies_to_an_onnx_file_without_metadata(tmp_path: Path,
                                                                caplog) -> None:
    onnx = pytest.importorskip("onnx", reason="the [onnx] extra is not installed")
    pytest.importorskip("onnxruntime", reason="the [onnx] extra is not installed")
    from srgan_runtime.core.modelinfo import bundled_models, onnx_variant
    from srgan_runtime.upscaler import Upscaler

    model = onnx.load(str(onnx_variant(bundled_models()["fast"])))
    del model.metadata_props[:]  # as a foreign exporter writes it: --scale is needed
    path = tmp_path / "plain.onnx"
    onnx.save(model, str(path))
    with caplog.at_level("WARNING"):
        up = Upscaler(path, backend="onnxruntime", scale=4, max_memory="auto", overlap=8)
    assert up._footprint is not None and up._footprint.per_pixel > 0, caplog.text
    assert "not measured" not in caplog.text and "not applied" not in caplog.text


# --- 15, 16: output paths checked before any work --------------------------------------------

def _srrun_in_process(monkeypatch, *args: str):
    """srrun in this process with the model's opening forbidden: a refusal must come first."""
    from click.testing import CliRunner

    from srgan_runtime import upscaler
    from srgan_runtime.cli import cli

    def forbidden(*_a, **_k):
        raise AssertionError("the model was opened before the request was refused")

    monkeypatch.setattr(upscaler, "Upscaler", forbidden)
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_an_unknown_output_extension_is_refused_not_made_a_folder(monkeypatch, photo: Path,
                                                                  tmp_path: Path) -> None:
    r = _srrun_in_process(monkeypatch, "upscale", str(photo), "-o", str(tmp_path / "out.xyz"))
    assert r.exit_code == 2 and ".xyz is not an image format" in r.output, r.output
    assert "end it with '/'" in r.output
    assert not (tmp_path / "out.xyz").exists()
    Image.open(photo).save(photo.with_name("b.png"))
    r = _srrun_in_process(monkeypatch, "upscale", str(photo), str(photo.with_name("b.png")),
                          "-o", str(tmp_path / "results.v2"))
    assert r.exit_code == 2 and ".v2 is not an image format" in r.output


def test_a_folder_named_with_a_dot_works_with_a_slash_or_when_it_exists(photo: Path,
                                                                        tmp_path: Path) -> None:
    r = srrun("upscale", str(photo), "-o", str(tmp_path / "out.xyz") + "/", "--model", "fast",
              "--no-progress")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out.xyz" / "in_x4.png").is_file()
    (tmp_path / "results.v2").mkdir()
    r = srrun("upscale", str(photo), "-o", str(tmp_path / "results.v2"), "--model", "fast",
              "--no-progress")
    assert r.returncode == 0 and (tmp_path / "results.v2" / "in_x4.png").is_file(), r.stderr


def test_an_existing_output_is_exit_2_before_the_model_is_opened(monkeypatch, photo: Path,
                                                                 tmp_path: Path) -> None:
    out = tmp_path / "out.png"
    out.write_bytes(b"precious")
    r = _srrun_in_process(monkeypatch, "upscale", str(photo), "-o", str(out))
    assert r.exit_code == 2 and f"{out}: exists (use --overwrite" in r.output, r.output
    assert out.read_bytes() == b"precious"
    folder = tmp_path / "outs"
    folder.mkdir()
    (folder / "in_x4.png").write_bytes(b"precious")
    (folder / "b_x4.png").write_bytes(b"precious")
    Image.open(photo).save(photo.with_name("b.png"))
    r = _srrun_in_process(monkeypatch, "upscale", str(photo), str(photo.with_name("b.png")),
                          "-o", str(folder))
    assert r.exit_code == 2 and "2 of 2 outputs cannot be written" in r.output, r.output


# --- 12: a read-only file system is not "permission denied" ----------------------------------

def test_folder_problem_names_a_read_only_file_system(monkeypatch, tmp_path: Path) -> None:
    import os

    from srgan_runtime.core import files

    real = os.statvfs

    class ReadOnly:
        def __init__(self, st) -> None:
            self.st = st

        def __getattr__(self, name: str):
            if name == "f_flag":
                return self.st.f_flag | os.ST_RDONLY
            return getattr(self.st, name)

    monkeypatch.setattr(os, "statvfs", lambda p: ReadOnly(real(p)))
    problem = files.folder_problem(tmp_path)
    assert problem is not None and "read-only file system" in problem, problem


def _read_only_mount(tmp_path: Path) -> list[str]:
    """A command prefix running its command with ``tmp_path/ro`` a read-only tmpfs (a private
    mount namespace of an unprivileged user namespace); skips where the kernel refuses."""
    import shutil

    ro = tmp_path / "ro"
    ro.mkdir()
    prefix = ["unshare", "-rm", "sh", "-c", f'mount -t tmpfs -o ro tmpfs {ro} && exec "$@"',
              "sh"]
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare (util-linux) for a real read-only mount")
    probe = subprocess.run([*prefix, "touch", str(ro / "x")], capture_output=True, text=True,
                           timeout=30)
    if "Read-only file system" not in probe.stderr:
        pytest.skip(f"cannot mount a read-only tmpfs here ({probe.stderr.strip()[:80]})")
    return prefix


def test_srrun_and_srexport_say_read_only(photo: Path, tmp_path: Path,
                                          generator_file: Path) -> None:
    prefix = _read_only_mount(tmp_path)
    ro = tmp_path / "ro"
    cases = [
        [*SRRUN, "upscale", str(photo), "-o", str(ro / "out.png"), "--model", "fast"],
        [*SRRUN, "upscale", str(photo), "-o", str(tmp_path / "o.png"), "--model", "fast",
         "--report", str(ro / "run.json")],
        [sys.executable, "-m", "srgan_export.cli", "onnx", str(generator_file), "-o",
         str(ro / "g.onnx")],
    ]
    for cmd in cases:
        r = subprocess.run([*prefix, *cmd], capture_output=True, text=True, timeout=300)
        assert r.returncode == 2, (cmd, r.stderr)
        assert "read-only file system" in r.stderr and "permission denied" not in r.stderr, (
            cmd, r.stderr)
        assert "Traceback" not in r.stderr


# --- 9: other projects' checkpoints with wrong or missing tensors ---------------------------

def _compact_state():
    pytest.importorskip("torch", reason="the [torch] extra is not installed")
    import torch

    from srgan_runtime.core.foreign import import_spandrel

    try:
        import_spandrel()
    except UserError as exc:
        pytest.skip(f"spandrel not importable: {exc}")
    from spandrel.architectures.Compact import Compact

    torch.manual_seed(0)
    return Compact(num_feat=16, num_conv=4, upscale=4).state_dict()


def _broken(tmp_path: Path, name: str, state: dict) -> Path:
    import torch

    path = tmp_path / f"{name}.pth"
    torch.save({"params": state}, path)
    return path


def test_foreign_checkpoint_errors_name_the_tensors(tmp_path: Path) -> None:
    import torch

    from srgan_runtime.core.foreign import load_descriptor

    sd = _compact_state()
    missing = {k: v for k, v in sd.items() if k != "body.2.weight"}
    extra = {**sd, "extra.weight": torch.zeros(3)}
    shape = {**sd, "body.2.weight": torch.zeros(16, 16, 5, 5)}
    odd = {**sd, "body.16.weight": torch.zeros(1)}
    cases = [
        (missing, "missing 1 tensor(s): body.2.weight"),
        (extra, "1 unexpected tensor(s): extra.weight"),
        (shape, "body.2.weight is [16, 16, 5, 5] in the file, [16, 16, 3, 3] for the network"),
        (odd, "tensor 'body.16.bias' is missing"),
    ]
    for k, (state, words) in enumerate(cases):
        path = _broken(tmp_path, f"c{k}", state)
        with pytest.raises(UserError) as err:
            load_descriptor(path)
        assert words in str(err.value), str(err.value)
        assert not str(err.value).endswith(":)"), str(err.value)
    whole = _broken(tmp_path, "whole", sd)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(whole.read_bytes()[:5000])
    with pytest.raises(UserError, match="damaged or truncated"):
        load_descriptor(truncated)


def test_srrun_names_the_missing_tensor_in_one_line(photo: Path, tmp_path: Path) -> None:
    sd = _compact_state()
    path = _broken(tmp_path, "compact", {k: v for k, v in sd.items() if k != "body.2.bias"})
    r = srrun("upscale", str(photo), "-o", str(tmp_path / "o.png"), "--model", str(path))
    assert r.returncode == 2 and "missing 1 tensor(s): body.2.bias" in r.stderr, r.stderr
    assert len([ln for ln in r.stderr.splitlines() if ln.strip()]) == 1, r.stderr


# --- 10: non-finite weights refused when the file is opened; non-finite never "inf dB" ------

def _nan_generator(path: Path) -> Path:
    pytest.importorskip("torch", reason="the [torch] extra is not installed")
    import torch

    from srgan_train.archs import build_generator
    from srgan_train.checkpoint import save_generator
    from srgan_train.config import preset_config

    g = build_generator(preset_config("tiny", 4)).eval()
    with torch.no_grad():
        g.tail.weight.view(-1)[5] = float("nan")
        g.head[0].bias.view(-1)[0] = float("inf")
    save_generator(g, path, preset="tiny", step=1)
    return path


def test_nan_weights_are_refused_at_once_under_backend_auto(photo: Path, tmp_path: Path) -> None:
    model = _nan_generator(tmp_path / "nan.safetensors")
    t0 = time.monotonic()
    r = srrun("upscale", str(photo), "-o", str(tmp_path / "o.png"), "--model", str(model),
              timeout=120)
    assert time.monotonic() - t0 < 30
    assert r.returncode == 2, r.stderr
    assert "2 weight tensor(s) hold NaN or infinite values" in r.stderr, r.stderr
    assert "tail.weight" in r.stderr and "head.0.bias" in r.stderr
    for noise in ("exporting", "RuntimeWarning", "inf dB", "radius"):
        assert noise not in r.stderr, r.stderr
    r = subprocess.run([sys.executable, "-m", "srgan_export.cli", "onnx", str(model), "-o",
                        str(tmp_path / "nan.onnx")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "NaN or infinite" in r.stderr, r.stderr


def test_nan_weights_in_onnx_and_foreign_checkpoints_are_refused(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx", reason="the [onnx] extra is not installed")
    from onnx import numpy_helper

    from srgan_runtime.core.modelinfo import bundled_models, describe, onnx_variant

    model = onnx.load(str(onnx_variant(bundled_models()["fast"])))
    init = model.graph.initializer[3]
    arr = numpy_helper.to_array(init).copy()
    arr.flat[0] = np.nan
    init.CopyFrom(numpy_helper.from_array(arr, init.name))
    onnx.save(model, str(tmp_path / "nan.onnx"))
    with pytest.raises(UserError, match=f"NaN or infinite values \\({init.name}\\)"):
        describe(tmp_path / "nan.onnx")
    sd = _compact_state()
    sd["body.0.weight"][0, 0, 0, 0] = float("nan")
    path = _broken(tmp_path, "nan_compact", sd)
    with pytest.raises(UserError, match=r"NaN or infinite values \(body\.0\.weight\)"):
        describe(path)


def test_parity_report_says_non_finite_never_inf_db() -> None:
    import warnings

    from srgan_export.parity import GATES, ParityReport, compare_outputs

    ref = np.full((1, 3, 16, 16), np.nan, np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "invalid value encountered in cast"
        case = compare_outputs("nan", ref, ref.copy())
    report = ParityReport("ONNX Runtime vs PyTorch", GATES["fp32"], [case])
    text = "\n".join(report.lines())
    assert not report.passed and "inf dB" not in text and "SSIM 1.0" not in text
    assert "non-finite output (NaN/Inf) in 1 of 1 case(s), the reference (PyTorch) too" in text
    assert report.to_dict()["worst_psnr"] == "nan"


# --- 11: --precision int8 on PyTorch weights: decided from the description ------------------

def test_int8_on_pytorch_weights_is_refused_before_any_export(photo: Path, tmp_path: Path,
                                                              generator_file: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "generator.safetensors").write_bytes(generator_file.read_bytes())
    sd = _compact_state()
    foreign = _broken(tmp_path, "compact_ok", sd)
    for model, what in ((generator_file, "a generator file"), (run_dir, "a generator file"),
                        (foreign, "another project's checkpoint")):
        t0 = time.monotonic()
        r = srrun("upscale", str(photo), "-o", str(tmp_path / "o.png"), "--model", str(model),
                  "--precision", "int8", timeout=120)
        assert r.returncode == 2 and time.monotonic() - t0 < 30, r.stderr
        assert f"this is {what}" in r.stderr and "srexport onnx --int8" in r.stderr, r.stderr
        assert "exporting" not in r.stderr and "srgan-toolkit/onnx" not in r.stderr, r.stderr
    r = srrun("upscale", str(photo), "-o", str(tmp_path / "o.png"), "--model", "fast",
              "--precision", "int8", "--no-progress")  # a bundled model has its INT8 copy
    assert r.returncode == 0, r.stderr


# --- 8: training checkpoints carry a digest; a damaged one is refused, the previous offered --

def _srtrain(*args: str):
    from click.testing import CliRunner

    from srgan_train.cli import cli

    r = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert "Traceback" not in r.output
    return r


def _flip_tensor_bytes(path: Path, count: int = 64) -> None:
    """Invert ``count`` bytes in the middle of the largest tensor payload of a torch zip."""
    import zipfile

    with zipfile.ZipFile(path) as z:
        entry = max((i for i in z.infolist() if "/data/" in i.filename),
                    key=lambda i: i.file_size)
    with open(path, "r+b") as f:
        f.seek(entry.header_offset + 26)
        name_len, extra_len = (int.from_bytes(f.read(2), "little") for _ in range(2))
        start = entry.header_offset + 30 + name_len + extra_len + entry.file_size // 2
        f.seek(start)
        data = bytes(b ^ 0xFF for b in f.read(count))
        f.seek(start)
        f.write(data)


@pytest.fixture
def run_with_two_checkpoints(tmp_path: Path, textures: Path) -> Path:
    pytest.importorskip("torch", reason="the [torch] extra is not installed")
    run = tmp_path / "run"
    r = _srtrain("fit", "--data", str(textures), "--preset", "tiny", "--steps", "4",
                 "--save-every", "2", "--batch-size", "2", "--patch-size", "32",
                 "--no-progress", "--out", str(run))
    assert r.exit_code == 0, r.output
    assert (run / "checkpoints" / "previous.pt").is_file()
    return run


def test_flipped_bytes_in_a_checkpoint_are_refused_offering_the_previous(
        run_with_two_checkpoints: Path) -> None:
    run = run_with_two_checkpoints
    last, prev = run / "checkpoints" / "last.pt", run / "checkpoints" / "previous.pt"
    _flip_tensor_bytes(last)
    r = _srtrain("fit", "--out", str(run), "--resume", "--steps", "6", "--no-progress")
    assert r.exit_code == 2, r.output
    line = r.output.strip().splitlines()[-1]
    assert f"{last}: damaged" in line and f"'mv {prev} {last}' resumes from step" in line, line
    prev.replace(last)
    r = _srtrain("fit", "--out", str(run), "--resume", "--steps", "6", "--no-progress")
    assert r.exit_code == 0 and "done: step 6/6" in r.output, r.output


def test_a_damaged_rng_state_is_a_clear_refusal_with_or_without_a_digest(
        run_with_two_checkpoints: Path) -> None:
    import torch

    run = run_with_two_checkpoints
    last = run / "checkpoints" / "last.pt"
    state = torch.load(last, weights_only=True)
    state["rng_cpu"] = torch.zeros(7, dtype=torch.uint8)
    torch.save(state, last)  # the old digest no longer matches
    r = _srtrain("fit", "--out", str(run), "--resume", "--steps", "6", "--no-progress")
    assert r.exit_code == 2 and "damaged" in r.output and "internal error" not in r.output
    del state["digest"]  # as written before digests existed
    torch.save(state, last)
    r = _srtrain("fit", "--out", str(run), "--resume", "--steps", "6", "--no-progress")
    assert r.exit_code == 2 and "damaged random-number state" in r.output, r.output


# --- 13: another project's checkpoint: no radius measurement unless tiles need it ------------

def _texture_png(path: Path, w: int, h: int, seed: int) -> Path:
    from srgan_runtime.core.synth import texture

    Image.fromarray(texture(np.random.default_rng(seed), h, w)).save(path)
    return path


def test_first_run_of_a_foreign_checkpoint_measures_only_when_tiles_need_it(
        tmp_path: Path) -> None:
    _compact_state()  # skips without torch/spandrel
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from foreign_models import compact

    model = tmp_path / "realesr-animevideov3_like.pth"
    compact(model)
    small = _texture_png(tmp_path / "small.png", 125, 120, 1)
    r = srrun("upscale", str(small), "-o", str(tmp_path / "small_x4.png"), "--model",
              str(model), timeout=300)
    assert r.returncode == 0, r.stderr
    assert Image.open(tmp_path / "small_x4.png").size == (500, 480)
    assert "effective radius" not in r.stderr, r.stderr  # one tile: nothing to measure
    big = _texture_png(tmp_path / "big.png", 420, 300, 2)
    r = srrun("upscale", str(big), "-o", str(tmp_path / "big_x4.png"), "--model", str(model),
              "--progress", timeout=300)
    assert r.returncode == 0, r.stderr
    assert "measuring the effective radius" in r.stderr and "at most 60 s" in r.stderr
    assert "effective radius:" in r.stderr  # the progress bar
    assert "passes" in r.stderr  # the result line says what it cost
    r = srrun("upscale", str(big), "-o", str(tmp_path / "big_again.png"), "--model",
              str(model), "--no-progress", timeout=300)
    assert r.returncode == 0 and "measuring" not in r.stderr, r.stderr  # cached
    r = srrun("upscale", str(big), "-o", str(tmp_path / "big_o.png"), "--model", str(model),
              "--overlap", "6", "--no-cache", "--no-progress", timeout=300)
    assert r.returncode == 0 and "effective radius" not in r.stderr, r.stderr
