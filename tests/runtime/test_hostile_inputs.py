"""Hostile but realistic input, end to end: each test builds its own small corpus.

One test per defect of the reliability review (issue 11), named after the behaviour, plus the
kinds that already held (one line per bad file, no traceback, nothing overwritten, pickles never
run, bombs refused cheaply), so that they keep holding. Anything that could exhaust memory or
hang runs in a subprocess under a memory limit and a timeout.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from srgan_runtime.backends import Backend, quantize
from srgan_runtime.core.modelinfo import ModelInfo

SRRUN = [sys.executable, "-m", "srgan_runtime.cli"]
SRTRAIN = [sys.executable, "-m", "srgan_train.cli"]
BIN = Path(sys.executable).parent


def srrun(*args: str, timeout: float = 300, mem_gb: float | None = None
          ) -> subprocess.CompletedProcess:
    """``srrun`` in a subprocess, optionally under an address-space limit (set by the child
    itself: ``preexec_fn`` is unsafe in a parent that runs threads, as torch and OpenVINO do)."""
    cmd = SRRUN
    if mem_gb is not None:
        size = int(mem_gb * 2**30)
        cmd = [sys.executable, "-c",
               "import resource, runpy, sys; "
               f"resource.setrlimit(resource.RLIMIT_AS, ({size}, {size})); "
               "sys.argv[0] = 'srrun'; "
               "runpy.run_module('srgan_runtime.cli', run_name='__main__')"]
    r = subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=timeout)
    assert "Traceback" not in r.stderr, r.stderr
    return r


def srrun_in_process(*args: str):
    from srgan_runtime.cli import cli

    r = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert "Traceback" not in r.output
    return r


def srtrain_in_process(*args: str):
    from srgan_train.cli import cli

    r = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert "Traceback" not in r.output
    return r


def save_rgb(path: Path, h: int = 12, w: int = 16, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return path


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims ``width`` x ``height`` followed by a few bytes of pixel data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat))
    return path


# --- model files --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def nan_generator(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny x4 generator file with finite weights whose output overflows to Inf/NaN (its
    tail's weights are near float32's largest value): broken weights that pass the
    finiteness check every model file gets when it is opened."""
    import torch

    from srgan_train.archs import build_generator
    from srgan_train.checkpoint import save_generator
    from srgan_train.config import preset_config

    g = build_generator(preset_config("tiny", 4)).eval()
    with torch.no_grad():
        g.tail.weight.fill_(3e38)
        g.tail.weight[::2].fill_(-3e38)
    path = tmp_path_factory.mktemp("nan") / "nan.safetensors"
    save_generator(g, path, preset="tiny", step=1)
    return path


def tiny_onnx(path: Path, *, add: float = 0.0, **props: str) -> Path:
    """A hand-built x4 'model' (nearest-neighbour Resize, plus ``add``) with this toolkit's
    metadata, overridden by ``props``: fast and torch-free."""
    import onnx
    from onnx import TensorProto, helper

    from srgan_runtime.core.modelinfo import ModelInfo

    scales = helper.make_tensor("scales", TensorProto.FLOAT, [4], [1, 1, 4, 4])
    nan = add != add
    # NaN made by the graph (0 / 0), not stored: a NaN weight is refused when the file opens.
    bias = helper.make_tensor("bias", TensorProto.FLOAT, [1], [0.0 if nan else add])
    nodes = [helper.make_node("Resize", ["lr", "", "scales"], ["up"], mode="nearest"),
             helper.make_node("Div", ["bias", "bias"] if nan else ["bias", "one"], ["b"]),
             helper.make_node("Add", ["up", "b" if nan else "bias"], ["sr"])]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("lr", TensorProto.FLOAT, ["n", 3, "h", "w"])],
        [helper.make_tensor_value_info("sr", TensorProto.FLOAT, ["n", 3, "h4", "w4"])],
        initializer=[scales, bias, helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    meta = {**ModelInfo(scale=4, receptive_radius=1).to_props(), **props}
    onnx.helper.set_model_props(model, meta)
    onnx.save(model, str(path))
    return path


def fake_generator_file(path: Path, config: dict, tensors: dict | None = None) -> Path:
    """A safetensors file with this toolkit's generator metadata and the given config, holding
    only ``tensors`` (default: one tiny tensor)."""
    import torch
    from safetensors.torch import save_file

    meta = {"format": "srgan-toolkit/generator", "format_version": "1", "preset": "tiny",
            "scale": str(config.get("scale", 4)), "step": "0", "config": json.dumps(config)}
    save_file(tensors or {"head.0.weight": torch.zeros(1)}, str(path), metadata=meta)
    return path


# --- 1. NaN output ------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["generator", "onnxruntime", "openvino"])
def test_nan_model_output_fails_the_file_instead_of_writing_black(
        kind: str, nan_generator: Path, tmp_path: Path) -> None:
    if kind == "openvino":
        pytest.importorskip("openvino")
    src = save_rgb(tmp_path / "in" / "a.png")
    save_rgb(tmp_path / "in" / "b.png", seed=1)
    engine = (nan_generator if kind == "generator"
              else tiny_onnx(tmp_path / "nan.onnx", add=float("nan")))
    backend = "auto" if kind == "generator" else kind
    out = tmp_path / "out"
    report = tmp_path / "run.json"
    r = srrun_in_process("upscale", str(src.parent), "-o", str(out), "--engine", str(engine),
                         "--backend", backend, "--report", str(report), "--no-progress")
    assert r.exit_code == 1
    assert "NaN/Inf" in r.stderr and "a.png" in r.stderr
    assert "upscaled 0 image(s)" in r.stdout and "2 failed" in r.stdout
    assert not out.exists() or not list(out.iterdir())  # nothing written, black or otherwise
    files = json.loads(report.read_text())["files"]
    assert {f["status"] for f in files} == {"failed"}


def test_nan_in_bf16_recomputed_in_fp32_and_failed_if_still_nan(tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    src = save_rgb(tmp_path / "a.png")
    engine = tiny_onnx(tmp_path / "nan.onnx", add=float("nan"))
    r = srrun_in_process("upscale", str(src), "-o", str(tmp_path / "o.png"), "--engine",
                         str(engine), "--backend", "openvino", "--precision", "bf16",
                         "--no-progress")
    assert r.exit_code == 1 and "in fp32 too" in r.stderr
    assert not (tmp_path / "o.png").exists()


def test_api_raises_on_nan_output(nan_generator: Path) -> None:
    from srgan_runtime import Upscaler
    from srgan_runtime.upscaler import UpscaleError

    up = Upscaler(nan_generator, backend="torch", device="cpu", tile=0)
    with pytest.raises(UpscaleError, match="NaN/Inf"):
        up.upscale(np.zeros((8, 8, 3), np.uint8))


def test_srtrain_eval_refuses_nan_output(nan_generator: Path, textures: Path) -> None:
    r = srtrain_in_process("eval", str(nan_generator), "--data", str(textures))
    assert r.exit_code == 2 and "NaN/Inf" in r.output


# --- 2. float and 32-bit integer images ---------------------------------------------------------

def test_float_tiff_is_upscaled_as_16bit_not_black(generator_file: Path,
                                                     tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    values = rng.uniform(0.2, 0.8, (12, 16)).astype(np.float32)
    src = tmp_path / "f.tif"
    Image.fromarray(values, mode="F").save(src)
    out = tmp_path / "f_x4.tif"
    r = srrun_in_process("upscale", str(src), "-o", str(out), "--engine", str(generator_file),
                         "--tile", "0", "--no-progress")
    assert r.exit_code == 0, r.output
    from srgan_runtime import load_image

    pic = load_image(out)
    assert pic.bits == 16 and pic.grey and pic.colour.shape == (48, 64)
    assert abs(pic.colour.mean() / 65535 - values.mean()) < 0.05  # not black
    assert "float image" in r.stderr  # the conversion is said, not silent


@pytest.mark.parametrize("case", ["float_out_of_range", "float_nan", "int32_beyond_16_bits"])
def test_undefined_pixel_values_are_refused_with_one_line(case: str, generator_file: Path,
                                                          tmp_path: Path) -> None:
    src = tmp_path / f"{case}.tif"
    if case == "float_out_of_range":
        Image.fromarray(np.full((8, 8), 200.0, np.float32), mode="F").save(src)
    elif case == "float_nan":
        Image.fromarray(np.full((8, 8), np.nan, np.float32), mode="F").save(src)
    else:
        Image.fromarray(np.full((8, 8), 1 << 20, np.int32), mode="I").save(src)
    r = srrun_in_process("upscale", str(src), "-o", str(tmp_path / "o.tif"), "--engine",
                         str(generator_file), "--no-progress")
    assert r.exit_code == 1 and src.name in r.stderr
    assert not (tmp_path / "o.tif").exists()


def test_int32_image_within_16_bits_is_read_as_16bit(tmp_path: Path) -> None:
    from srgan_runtime import load_image

    src = tmp_path / "i.tif"
    Image.fromarray(np.full((4, 4), 40000, np.int32), mode="I").save(src)
    pic = load_image(src)
    assert pic.bits == 16 and int(pic.colour[0, 0]) == 40000


# --- 3. memory bomb in a model file -------------------------------------------------------------

@pytest.mark.parametrize("config", [
    {"scale": 4, "channels": 1024, "blocks": 400, "batchnorm": False},
    {"scale": 4, "channels": 100000, "blocks": 100000},
    {"scale": 4, "channels": 1024, "blocks": 200, "batchnorm": False},  # in bounds, no tensors
])
def test_huge_config_in_a_small_model_file_is_refused_before_allocating(
        config: dict, tmp_path: Path) -> None:
    bomb = fake_generator_file(tmp_path / "bomb.safetensors", config)
    assert bomb.stat().st_size < 2000
    src = save_rgb(tmp_path / "a.png")
    t0 = time.perf_counter()
    r = srrun("upscale", str(src), "-o", str(tmp_path / "o.png"), "--engine", str(bomb),
              "--no-progress", timeout=120, mem_gb=6)
    assert r.returncode == 2, r.stderr
    assert "bomb.safetensors" in r.stderr
    assert "outside" in r.stderr or "do not match the stored config" in r.stderr
    assert time.perf_counter() - t0 < 100


def test_generator_with_wrong_tensors_names_what_differs(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    from srgan_runtime.core.errors import UserError
    from srgan_train.archs import build_generator
    from srgan_train.checkpoint import load_generator
    from srgan_train.config import preset_config

    cfg = preset_config("tiny", 4)
    state = {k: v.contiguous() for k, v in build_generator(cfg).state_dict().items()}
    state["tail.weight"] = torch.zeros(3, 16, 3, 3)
    del state["head.0.bias"]
    state["extra.weight"] = torch.zeros(2)
    path = tmp_path / "g.safetensors"
    meta = {"format": "srgan-toolkit/generator", "format_version": "1", "preset": "tiny",
            "scale": "4", "step": "0", "config": cfg.to_json()}
    save_file(state, str(path), metadata=meta)
    with pytest.raises(UserError) as info:
        load_generator(path)
    text = str(info.value)
    assert "head.0.bias" in text and "extra.weight" in text and "tail.weight" in text
    assert "[3, 16, 3, 3]" in text and "[3, 16, 5, 5]" in text


# --- 4. symlink loops ---------------------------------------------------------------------------

def test_recursive_glob_survives_symlink_loops_and_takes_each_file_once(
        generator_file: Path, tmp_path: Path) -> None:
    root = tmp_path / "d"
    save_rgb(root / "x" / "a.png")
    save_rgb(root / "y" / "b.png", seed=2)
    (root / "x" / "loop").symlink_to("..")          # d/x/loop -> d
    (root / "y" / "loop2").symlink_to("../x")       # d/y/loop2 -> d/x
    (root / "x" / "alias.png").symlink_to("a.png")  # the same file under another name
    out = tmp_path / "out"
    r = srrun("upscale", f"{root}/**/*.png", str(root / "x" / "a.png"), "-r", "-o", str(out),
              "--engine", str(generator_file), "--no-progress", timeout=120)
    assert r.returncode == 0, r.stderr
    assert "upscaled 2 image(s)" in r.stdout and "0 failed" in r.stdout
    assert "also writes" not in r.stderr


def test_collect_inputs_dedupes_by_real_path(tmp_path: Path) -> None:
    from srgan_runtime.pipeline import collect_inputs

    a = save_rgb(tmp_path / "a.png")
    (tmp_path / "link.png").symlink_to(a)
    found = collect_inputs([str(a), str(tmp_path), str(tmp_path / "*.png")])
    assert [f.name for f, _ in found] == ["a.png"]


# --- 5. resume as printed -----------------------------------------------------------------------

def test_resume_hint_printed_after_ctrl_c_works_as_printed(tmp_path: Path,
                                                           textures: Path) -> None:
    out = tmp_path / "my run"
    args = ["fit", "--data", str(textures), "--preset", "tiny", "--steps", "400",
            "--batch-size", "2", "--patch-size", "32", "--log-every", "1", "--save-every",
            "100000", "--no-progress", "--out", str(out)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([*SRTRAIN, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    metrics = out / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (metrics.exists() and metrics.read_text().strip()):
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    hint = next(ln for ln in stderr.splitlines() if "continue with:" in ln)
    command = shlex.split(hint.split("continue with:", 1)[1])
    assert command[:2] == ["srtrain", "fit"]
    r = subprocess.run([str(BIN / "srtrain"), *command[1:]], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert "done: step 400/400" in r.stdout


def test_failed_fit_leaves_no_empty_run_folder(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    out = tmp_path / "run"
    r = srtrain_in_process("fit", "--data", str(empty), "--preset", "tiny", "--out", str(out),
                           "--no-progress")
    assert r.exit_code == 2 and "no images" in r.output
    assert not out.exists()
    # A folder the user had (with their files) is never removed.
    mine = tmp_path / "mine"
    mine.mkdir()
    r = srtrain_in_process("fit", "--data", str(empty), "--preset", "tiny", "--out", str(mine),
                           "--no-progress")
    assert r.exit_code == 2 and mine.is_dir()


def test_time_based_checkpoint_before_the_first_save_step(tmp_path: Path, textures: Path,
                                                          monkeypatch) -> None:
    import srgan_train.train as train
    from srgan_train.train import TrainConfig, Trainer, prepare_run_dir

    clock = [0.0]
    monkeypatch.setattr(train, "_clock", lambda: clock[0])
    cfg = TrainConfig(data=[str(textures)], out=str(tmp_path / "run"), preset="tiny",
                      steps=8, batch_size=2, patch_size=32, save_every=1000, save_minutes=5,
                      progress=False)
    prepare_run_dir(Path(cfg.out), resume=False, overwrite=False)
    trainer = Trainer(cfg)
    seen: dict[int, bool] = {}

    def on_step(t: Trainer, row: dict) -> None:
        seen[t.step] = (Path(cfg.out) / train.LAST_CHECKPOINT).exists()
        clock[0] += 100.0  # 100 s a step: the 5-minute checkpoint falls due at step 4

    trainer.on_step = on_step
    trainer.fit()
    assert seen[3] is False and seen[4] is True


# --- 6. output size -----------------------------------------------------------------------------

def test_outscale_output_is_bounded_per_file_and_the_job_goes_on(generator_file: Path,
                                                                 tmp_path: Path) -> None:
    save_rgb(tmp_path / "in" / "small.png", 4, 4)
    save_rgb(tmp_path / "in" / "big.png", 64, 64)
    out = tmp_path / "out"
    r = srrun("upscale", str(tmp_path / "in"), "-o", str(out), "--engine", str(generator_file),
              "--outscale", "100", "--max-output-pixels", "1000000", "--no-progress",
              mem_gb=6)
    assert r.returncode == 1
    assert "big.png" in r.stderr and "--max-output-pixels" in r.stderr
    assert "upscaled 1 image(s)" in r.stdout and "1 failed" in r.stdout
    with Image.open(out / "small_x100.png") as im:
        assert im.size == (400, 400)
    # The default bound: --outscale 400 on 64x64 is 655 MP, --outscale 4000 would be 65 GP.
    r = srrun("upscale", str(tmp_path / "in" / "big.png"), "-o", str(tmp_path / "o.png"),
              "--engine", str(generator_file), "--outscale", "4000", "--no-progress", mem_gb=6)
    assert r.returncode == 1 and "MemoryError" not in r.stderr
    assert "over --max-output-pixels" in r.stderr


# --- 7. exit codes for bad numbers and metadata -------------------------------------------------

@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "0"])
def test_bad_outscale_is_exit_2_before_any_work(value: str, tmp_path: Path) -> None:
    r = srrun_in_process("upscale", str(tmp_path / "missing.png"), "-o", str(tmp_path / "o"),
                         "--outscale", value)
    assert r.exit_code == 2 and "--outscale" in r.output


@pytest.mark.parametrize("props, words", [
    ({"scale": "four"}, "scale='four'"),
    ({"receptive_radius": "-3"}, "receptive_radius=-3"),
    ({"static_shape": "1,100000,100000"}, "static shape"),
    ({"precision": "int4"}, "precision"),
])
def test_bad_onnx_metadata_is_exit_2_with_the_field_named(props: dict, words: str,
                                                          tmp_path: Path) -> None:
    model = tiny_onnx(tmp_path / "m.onnx", **props)
    src = save_rgb(tmp_path / "a.png")
    r = srrun_in_process("upscale", str(src), "-o", str(tmp_path / "o.png"), "--engine",
                         str(model), "--backend", "onnxruntime", "--no-progress")
    assert r.exit_code == 2 and words in r.output and "internal error" not in r.output


@pytest.mark.parametrize("option", [["--lr", "nan"], ["--lr", "inf"], ["--ema-decay", "2"],
                                    ["--d-lr", "-1"], ["--grad-clip", "nan"],
                                    ["--time-limit", "inf"]])
def test_bad_training_numbers_are_exit_2(option: list[str], tmp_path: Path,
                                         textures: Path) -> None:
    r = srtrain_in_process("fit", "--data", str(textures), "--out", str(tmp_path / "run"),
                           *option)
    assert r.exit_code == 2 and option[0] in r.output
    assert not (tmp_path / "run").exists()


def test_training_config_api_refuses_nan(tmp_path: Path) -> None:
    from srgan_runtime.core.errors import UserError
    from srgan_train.train import TrainConfig

    with pytest.raises(UserError, match="--lr"):
        TrainConfig(data=["x"], out=str(tmp_path), lr=float("nan")).resolved()
    with pytest.raises(UserError, match="--ema-decay"):
        TrainConfig(data=["x"], out=str(tmp_path), ema_decay=2.0).resolved()


# --- 8. clear messages --------------------------------------------------------------------------

def test_eval_where_every_pair_is_refused_lists_the_reasons(generator_file: Path,
                                                            tmp_path: Path) -> None:
    data = tmp_path / "set"
    for name in ("one", "two"):
        save_rgb(data / "HR" / f"{name}.png", 40, 40)
        save_rgb(data / "LR_bicubic" / "X4" / f"{name}.png", 7, 9)  # should be 10x10
    r = srtrain_in_process("eval", str(generator_file), "--data", str(data))
    assert r.exit_code == 2
    assert "one.png" in r.output and "two.png" in r.output and "expected 10x10" in r.output


class CountingBackend(Backend):
    """A stand-in backend (x4 nearest neighbour) that counts its calls."""

    name = "counting"

    def __init__(self) -> None:
        super().__init__(ModelInfo(scale=4, receptive_radius=1), "fp32", "cpu")
        self.calls = 0

    def run(self, batch: np.ndarray, bits: int = 8):
        self.calls += 1
        return quantize(batch.repeat(4, axis=2).repeat(4, axis=3), bits)


def test_output_folder_that_is_a_file_fails_before_any_compute(tmp_path: Path) -> None:
    from srgan_runtime import Upscaler
    from srgan_runtime.pipeline import collect_inputs, run_job

    save_rgb(tmp_path / "in" / "a.png")
    save_rgb(tmp_path / "in" / "b.png", seed=1)
    blocker = tmp_path / "out"
    blocker.write_text("I am a file")
    backend = CountingBackend()
    up = Upscaler(backend=backend)
    summary = run_job(up, collect_inputs([str(tmp_path / "in")]), blocker / "sub",
                      progress=False)
    assert summary.failed == 2 and backend.calls == 0
    assert all("is a file, not a folder" in r.error for r in summary.results)
    # On the command line: several inputs and an existing file as OUT is refused up front.
    r = srrun_in_process("upscale", str(tmp_path / "in"), "-o", str(blocker))
    assert r.exit_code == 2 and "is a file" in r.output and "Errno" not in r.output


def test_malicious_checkpoint_is_refused_without_running_it_or_advising_to(
        tmp_path: Path, textures: Path) -> None:
    import torch

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    run = tmp_path / "run"
    r = srtrain_in_process("fit", "--data", str(textures), "--preset", "tiny", "--steps", "2",
                           "--batch-size", "2", "--patch-size", "32", "--no-progress",
                           "--out", str(run))
    assert r.exit_code == 0, r.output
    torch.save({"format": "srgan-toolkit/train-state", "x": Evil()},
               run / "checkpoints" / "last.pt")
    r = srtrain_in_process("fit", "--out", str(run), "--resume", "--steps", "4")
    assert r.exit_code == 2 and "refused" in r.output
    assert "weights_only=False" not in r.output and "weights_only" not in r.output
    assert not marker.exists()


# --- 9. report path -----------------------------------------------------------------------------

def test_unwritable_report_is_refused_before_any_work(generator_file: Path,
                                                      tmp_path: Path) -> None:
    src = save_rgb(tmp_path / "a.png")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    out = tmp_path / "o.png"
    for report in (blocker / "run.json", tmp_path):  # inside a file; a folder's name
        r = srrun_in_process("upscale", str(src), "-o", str(out), "--engine",
                             str(generator_file), "--report", str(report), "--no-progress")
        assert r.exit_code == 2 and str(report) in r.output
        assert not out.exists()


def test_summary_is_printed_even_when_the_report_cannot_be_written(
        generator_file: Path, tmp_path: Path, monkeypatch) -> None:
    import srgan_runtime.pipeline as pipeline

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device", str(tmp_path / "run.json"))

    monkeypatch.setattr(pipeline, "write_report", broken)
    src = save_rgb(tmp_path / "a.png")
    r = srrun_in_process("upscale", str(src), "-o", str(tmp_path / "o.png"), "--engine",
                         str(generator_file), "--report", str(tmp_path / "run.json"),
                         "--no-progress")
    assert r.exit_code == 2 and "upscaled 1 image(s)" in r.stdout
    assert "No space left" in r.stderr


# --- 10. bit depth, animation -------------------------------------------------------------------

def test_16bit_rgb_tiff_stays_16bit(generator_file: Path, tmp_path: Path) -> None:
    import tifffile

    rng = np.random.default_rng(5)
    arr = rng.integers(0, 65536, (10, 12, 3), dtype=np.uint16)
    src = tmp_path / "c16.tif"
    tifffile.imwrite(src, arr, photometric="rgb")
    r = srrun_in_process("upscale", str(src), "-o", str(tmp_path / "out"), "--engine",
                         str(generator_file), "--no-progress")
    assert r.exit_code == 0, r.output
    back = tifffile.imread(tmp_path / "out" / "c16_x4.tif")
    assert back.dtype == np.uint16 and back.shape == (40, 48, 3)
    assert np.any(back % 257 != 0)  # real 16-bit values, not 8-bit ones scaled up


def test_16bit_grey_tiff_is_written_to_its_default_tif_output(generator_file: Path,
                                                              tmp_path: Path) -> None:
    src = tmp_path / "g16.tif"
    Image.fromarray(np.full((8, 10), 40000, np.uint16)).save(src)
    r = srrun_in_process("upscale", str(src), "-o", str(tmp_path / "out"), "--engine",
                         str(generator_file), "--no-progress")
    assert r.exit_code == 0, r.output
    from srgan_runtime import load_image

    pic = load_image(tmp_path / "out" / "g16_x4.tif")
    assert pic.bits == 16 and pic.grey and pic.colour.shape == (32, 40)


def test_16bit_input_to_an_8bit_format_is_converted_with_a_warning(generator_file: Path,
                                                                   tmp_path: Path) -> None:
    src = tmp_path / "g16.png"
    Image.fromarray(np.full((8, 10), 40000, np.uint16)).save(src)
    report = tmp_path / "run.json"
    r = srrun_in_process("upscale", str(src), "-o", str(tmp_path / "o.jpg"), "--engine",
                         str(generator_file), "--report", str(report), "--no-progress")
    assert r.exit_code == 0, r.output
    assert any("written as 8-bit" in w for w in json.loads(report.read_text())["files"][0]
               ["warnings"])


def test_animated_gif_is_skipped_with_a_reason_and_a_still_gif_is_upscaled(
        generator_file: Path, tmp_path: Path) -> None:
    d = tmp_path / "in"
    d.mkdir()
    frames = [Image.fromarray(np.full((8, 8, 3), v, np.uint8)) for v in (0, 120, 240)]
    frames[0].save(d / "anim.gif", save_all=True, append_images=frames[1:])
    frames[1].save(d / "still.gif")
    report = tmp_path / "run.json"
    r = srrun_in_process("upscale", str(d), "-o", str(tmp_path / "out"), "--engine",
                         str(generator_file), "--report", str(report), "--no-progress")
    assert r.exit_code == 0, r.output
    assert "upscaled 1 image(s)" in r.stdout and "1 skipped" in r.stdout
    assert "anim.gif" in r.stderr and "3 frames" in r.stderr
    status = {Path(f["input"]).name: (f["status"], f["error"])
              for f in json.loads(report.read_text())["files"]}
    assert status["anim.gif"][0] == "skipped" and "animated" in status["anim.gif"][1]
    assert status["still.gif"] == ("ok", None)
    assert (tmp_path / "out" / "still_x4.png").is_file()


# --- 11. surprises ------------------------------------------------------------------------------

def test_unwritable_output_extension_is_refused_and_makes_no_folder(
        generator_file: Path, tmp_path: Path) -> None:
    src = save_rgb(tmp_path / "a.png")
    r = srrun_in_process("upscale", str(src), "-o", str(tmp_path / "x.gif"), "--engine",
                         str(generator_file), "--no-progress")
    assert r.exit_code == 2 and "cannot write .gif" in r.output
    assert not (tmp_path / "x.gif").exists()


def test_output_name_and_format_that_disagree_are_refused(generator_file: Path,
                                                          tmp_path: Path) -> None:
    src = save_rgb(tmp_path / "a.png")
    r = srrun_in_process("upscale", str(src), "-o", str(tmp_path / "x.jpg"), "--format", "png",
                         "--engine", str(generator_file), "--no-progress")
    assert r.exit_code == 2 and "--format" in r.output
    assert not (tmp_path / "x.jpg").exists()
    r = srrun_in_process("upscale", str(src), "-o", str(tmp_path / "x.jpeg"), "--format", "jpg",
                         "--engine", str(generator_file), "--no-progress")
    assert r.exit_code == 0, r.output  # jpeg and jpg are one format
    with Image.open(tmp_path / "x.jpeg") as im:
        assert im.format == "JPEG"


def test_max_pixels_governs_above_pillows_own_limit(tmp_path: Path) -> None:
    from srgan_runtime import load_image
    from srgan_runtime.core.errors import ImageError

    big = png_header_only(tmp_path / "big.png", 15000, 12000)  # 180 MP: over Pillow's 179 MP
    with pytest.raises(ImageError) as info:  # allowed, so it is decoded (and is truncated)
        load_image(big, max_pixels=300_000_000)
    assert "decompression bomb" not in str(info.value) and "truncated" in str(info.value)
    with pytest.raises(ImageError, match="over --max-pixels 100000000"):
        load_image(big, max_pixels=100_000_000)
    assert Image.MAX_IMAGE_PIXELS is not None  # Pillow's own limit is back for everyone else


def _default_sigint() -> None:
    """Where the test run itself was started in the background by a non-interactive shell,
    SIGINT is ignored and children inherit that (Python then installs no KeyboardInterrupt
    handler): give the child the default disposition, as a terminal would."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_in_srrun_writes_the_report_and_the_summary(tmp_path: Path) -> None:
    d = tmp_path / "in"
    for i in range(40):
        save_rgb(d / f"{i:02d}.png", 96, 96, seed=i)
    out, report = tmp_path / "out", tmp_path / "run.json"
    proc = subprocess.Popen([*SRRUN, "upscale", str(d), "-o", str(out), "--engine", "default",
                             "--tile", "128", "--batch", "1", "--report", str(report),
                             "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint)
    deadline = time.time() + 120
    while time.time() < deadline and not (out.is_dir() and any(out.glob("*.png"))):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "interrupted" in stdout and "upscaled" in stdout
    doc = json.loads(report.read_text())
    statuses = [f["status"] for f in doc["files"]]
    assert doc["interrupted"] is True and "interrupted" in statuses and "ok" in statuses
    written = {p.name for p in out.glob("*.png")}
    assert written == {f"{Path(f['input']).stem}_x4.png" for f in doc["files"]
                       if f["status"] == "ok"}
    assert not list(out.glob(".*tmp"))


def test_megapixels_out_count_only_files_that_were_written(tmp_path: Path,
                                                           monkeypatch) -> None:
    import srgan_runtime.pipeline as pipeline
    from srgan_runtime import Upscaler

    real = pipeline.save_image

    def flaky(pic, dst, *args, **kwargs):
        if dst.name.startswith("b"):
            raise OSError(28, "No space left on device")
        return real(pic, dst, *args, **kwargs)

    monkeypatch.setattr(pipeline, "save_image", flaky)
    save_rgb(tmp_path / "in" / "a.png", 10, 10)
    save_rgb(tmp_path / "in" / "b.png", 10, 10)
    up = Upscaler(backend=CountingBackend())
    summary = pipeline.run_job(up, pipeline.collect_inputs([str(tmp_path / "in")]),
                               tmp_path / "out", progress=False)
    assert summary.ok == 1 and summary.failed == 1
    assert summary.megapixels_out == pytest.approx(40 * 40 / 1e6)


# --- what already held, kept --------------------------------------------------------------------

def test_kept_behaviours_one_line_per_bad_file_nothing_overwritten_bombs_cheap(
        generator_file: Path, tmp_path: Path) -> None:
    d = tmp_path / "in"
    save_rgb(d / "good.png")
    (d / "text.png").write_text("not an image")
    full = (d / "good.png").read_bytes()
    (d / "trunc.png").write_bytes(full[: len(full) // 2])
    png_header_only(d / "bomb.png", 100000, 100000)  # 10 GP claimed in 33 bytes
    out = tmp_path / "out"
    out.mkdir()
    (out / "good_x4.png").write_bytes(b"precious")
    r = srrun("upscale", str(d), "-o", str(out), "--engine", str(generator_file),
              "--no-progress", mem_gb=6, timeout=120)
    assert r.returncode == 2 and "good_x4.png: exists" in r.stderr  # refused before any work
    assert (out / "good_x4.png").read_bytes() == b"precious"
    t0 = time.perf_counter()
    r = srrun("upscale", str(d), "-o", str(out), "--engine", str(generator_file),
              "--no-progress", "--skip-existing", mem_gb=6, timeout=120)
    assert time.perf_counter() - t0 < 100
    assert r.returncode == 1
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("ERROR")]
    assert len(errors) == 3  # one line per bad file
    assert (out / "good_x4.png").read_bytes() == b"precious"
    assert "bomb.png" in r.stderr
