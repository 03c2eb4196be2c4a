"""One verify-and-land routine for every export: an artifact and its companions land together
only when its parity report passed; otherwise nothing changes at the destination and nothing is
left behind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from srgan_export.landing import ParityError, land
from srgan_export.parity import Gate, run_parity


def _report(passed: bool):
    x = np.random.default_rng(0).random((1, 3, 8, 8))
    noise = 0.0 if passed else 0.3
    return run_parity("candidate vs reference", Gate(40.0), [("case", x)], lambda a: a,
                      lambda a: np.clip(a + noise, 0, 1))


def _manifest(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _make(passed: bool | None):
    def make(staged: Path):
        staged.write_bytes(b"new artifact")
        _manifest(staged).write_text("{}")
        return None if passed is None else _report(passed)
    return make


@pytest.mark.parametrize("passed", [True, None], ids=["verified", "unverified"])
def test_a_passing_artifact_lands_with_its_companion(passed, tmp_path: Path) -> None:
    out = tmp_path / "model.plan"
    out.write_bytes(b"old")
    report = land(out, _make(passed), companions=(_manifest,))
    assert (report is None) == (passed is None)
    assert out.read_bytes() == b"new artifact" and _manifest(out).read_text() == "{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.plan", "model.plan.json"]


def test_a_failing_artifact_never_lands_and_the_old_file_stays(tmp_path: Path) -> None:
    out = tmp_path / "model.onnx"
    out.write_bytes(b"old")
    with pytest.raises(ParityError) as err:
        land(out, _make(False), companions=(_manifest,))
    assert not err.value.report.passed
    assert str(err.value).startswith(f"{out}: not written: ")
    assert out.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_a_missing_folder_is_made(tmp_path: Path) -> None:
    out = tmp_path / "new" / "deeper" / "model.onnx"
    land(out, _make(True))
    assert out.read_bytes() == b"new artifact"


def test_an_artifact_whose_making_fails_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "model.pt2"

    def make(staged: Path):
        staged.write_bytes(b"half")
        raise RuntimeError("compiler crashed")

    with pytest.raises(RuntimeError):
        land(out, make)
    assert list(tmp_path.iterdir()) == []


def test_every_exporter_lands_through_the_one_routine() -> None:
    """ONNX (fp32, fp16, int8), AOTInductor and TensorRT call ``land``; none writes its
    artifact another way."""
    import ast

    repo = Path(__file__).resolve().parents[2]
    for rel in ("export/onnx_export.py", "export/aoti.py", "export/cli.py"):
        calls = {n.func.id for n in ast.walk(ast.parse((repo / rel).read_text()))
                 if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
        assert "land" in calls, rel
        assert "atomic_write" not in calls, rel
