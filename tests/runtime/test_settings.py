"""Each setting is declared once: the command-line options of ``srrun upscale``, ``srrun
serve``, ``srbench`` and ``srtrain fit`` come from the settings dataclasses' fields; the
settings validate on construction; one per-file worker with one exception policy serves the
local pipeline and the Ray workers."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from srgan_export.bench import bench_cmd
from srgan_runtime import pipeline
from srgan_runtime.cli import cli as srrun
from srgan_runtime.core.errors import UserError
from srgan_runtime.core.options import cli_fields, click_options, setting, take
from srgan_runtime.serve.app import ServeConfig
from srgan_runtime.serve.server import HttpConfig
from srgan_runtime.settings import UpscaleSettings, WriteOptions
from srgan_train.cli import cli as srtrain
from srgan_train.settings import TrainConfig


def _options(command: click.Command) -> set[str]:
    return {o for p in command.params for o in p.opts}


def _flag(f: dataclasses.Field) -> str:
    spec = f.metadata["cli"]
    return spec.negate or (spec.flags or ("--" + f.name.replace("_", "-"),))[0]


@pytest.mark.parametrize(("command", "owners"), [
    (srrun.commands["upscale"], [(UpscaleSettings, None), (WriteOptions, None)]),
    (srrun.commands["serve"], [(ServeConfig, None), (HttpConfig, None),
                               (UpscaleSettings, ("backend", "device", "precision", "tile"))]),
    (bench_cmd, [(UpscaleSettings, ("tile", "batch", "device", "threads"))]),
    (srtrain.commands["fit"], [(TrainConfig, None)]),
], ids=["srrun-upscale", "srrun-serve", "srbench", "srtrain-fit"])
def test_every_command_offers_its_settings_fields(command: click.Command, owners) -> None:
    offered = _options(command)
    for cls, only in owners:
        for f in cli_fields(cls, only):
            assert _flag(f) in offered, f"{command.name} lacks {_flag(f)} ({cls.__name__})"


def test_a_new_field_becomes_an_option_with_its_help_and_default() -> None:
    @dataclasses.dataclass(frozen=True)
    class Toy:
        level: int = setting(3, type=click.IntRange(0, 9), help="How much.")
        name: str = setting("x", help="Its name.")
        quiet: bool = setting(False, flag=True, help="Say less.")

    @click.command()
    @click_options(Toy)
    def cmd(**options) -> None:
        click.echo(repr(take(Toy, options)))

    runner = CliRunner()
    assert "Toy(level=3, name='x', quiet=False)" in runner.invoke(cmd, []).output
    got = runner.invoke(cmd, ["--level", "7", "--quiet"]).output
    assert "Toy(level=7, name='x', quiet=True)" in got
    assert "How much." in runner.invoke(cmd, ["--help"]).output
    assert runner.invoke(cmd, ["--level", "12"]).exit_code == 2


def test_srrun_upscale_defaults_are_the_settings_defaults() -> None:
    params = {p.name: p for p in srrun.commands["upscale"].params}
    for f in cli_fields(UpscaleSettings):
        want = "auto" if f.name == "max_memory" else f.default  # the CLI's one override
        assert params[f.name].default == want, f.name


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"tile": -1}, "--tile must be >= 0"),
    ({"batch": 0}, "--batch >= 1"),
    ({"device": "gpu"}, "--device 'gpu'"),
    ({"max_memory": "lots"}, "--max-memory 'lots'"),
    ({"outscale": float("nan")}, "--outscale nan"),
])
def test_upscale_settings_validate_on_construction(kwargs: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        UpscaleSettings(**kwargs)


def test_max_memory_is_normalised() -> None:
    assert UpscaleSettings(max_memory="1G").max_memory == 1 << 30
    assert UpscaleSettings(max_memory="off").max_memory == 0
    assert UpscaleSettings(max_memory="auto").max_memory == "auto"


def test_write_options_refuse_contradictions() -> None:
    with pytest.raises(UserError, match="exclude each other"):
        WriteOptions(overwrite=True, skip_existing=True)


# --- one per-file worker, one exception policy --------------------------------------------------

class _Boom(Exception):
    pass


@pytest.mark.parametrize("where", ["decode", "encode"])
def test_a_file_that_raises_anything_fails_alone(where: str, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Before, the pipeline and the Ray worker caught only (OSError, ValueError) around the
    write: any other exception stopped the whole job."""
    from srgan_runtime import Upscaler

    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a", "b", "c"):
        Image.fromarray(np.full((12, 10, 3), 40, np.uint8)).save(folder / f"{name}.png")
    real = getattr(pipeline, where)

    def flaky(*args, **kwargs):
        task = args[1] if where == "encode" else args[0]
        if task.src.name == "b.png" or task.dst.name.startswith("b_"):
            raise _Boom("something no one expected")
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, where, flaky)
    up = Upscaler("default", device="cpu", tile=0, max_memory=0)
    summary = pipeline.run_job(up, pipeline.collect_inputs([str(folder)]), tmp_path / "out",
                               progress=False)
    status = {Path(r.input).name: (r.status, r.error) for r in summary.results}
    assert status["a.png"][0] == status["c.png"][0] == "ok"
    assert status["b.png"] == ("failed", "_Boom: something no one expected")
    # The Ray worker's unit of work follows the same policy.
    task = pipeline.FileTask(folder / "b.png", tmp_path / "out" / "b_x4.png")
    res = pipeline.process_file(up, task, WriteOptions(overwrite=True))
    assert (res.status, res.error) == ("failed", "_Boom: something no one expected")


def test_process_file_writes_what_run_job_writes(tmp_path: Path, set5: Path) -> None:
    from srgan_runtime import Upscaler

    src = next((set5 / "LR_bicubic" / "X4").glob("*.png"))
    up = Upscaler("default", device="cpu", max_memory=0)
    res = pipeline.process_file(up, pipeline.FileTask(src, tmp_path / "one.png"),
                                WriteOptions())
    assert res.status == "ok" and res.out_size == [4 * s for s in Image.open(src).size]
    pipeline.run_job(up, [(src, src.parent)], tmp_path / "two.png", progress=False)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "one.png")),
                          np.asarray(Image.open(tmp_path / "two.png")))


def test_a_read_failure_is_not_called_a_write_failure() -> None:
    """The one policy keeps the stage's wording: an OSError while reading names its type; only
    a write's OSError or ValueError reads 'cannot write'."""
    err = OSError(2, "No such file or directory")
    assert pipeline.file_failure(err, "read") == ("failed", f"FileNotFoundError: {err}")
    assert pipeline.file_failure(err, "write") == ("failed", f"cannot write: {err}")
    assert pipeline.file_failure(ValueError("bad"), "write") == ("failed", "cannot write: bad")
