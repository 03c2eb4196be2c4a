"""The one verify-and-land routine of every export (ONNX fp32/fp16/int8, TensorRT engines,
AOTInductor packages): the artifact is made and verified under its own name in a private
folder beside the destination, and moved into place only when its parity report passed. A
failing (or failed) artifact never appears at the destination, whatever was there before
stays, and nothing is left behind."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from srgan_runtime.core.errors import UserError

from .parity import ParityReport


class ParityError(UserError):
    """The artifact failed its parity gate; carries the report."""

    def __init__(self, report: ParityReport, where: Path | None = None) -> None:
        what = f"{where}: not written: " if where is not None else ""
        super().__init__(f"{what}{report.lines()[-1]}")
        self.report = report


def land(out: Path, make: Callable[[Path], ParityReport | None], *,
         companions: Iterable[Callable[[Path], Path]] = ()) -> ParityReport | None:
    """``make(staged)`` writes the artifact at ``staged`` (``out``'s name, in a temporary
    folder beside it) and returns its parity report, or None where verification was skipped;
    the artifact and its companions (``companion(path)``: a file that belongs to it, such as
    an engine's manifest) then replace ``out``'s. A report that did not pass raises
    :class:`ParityError`, and nothing lands."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        folder = tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.")
    except OSError as exc:  # name the folder the user chose, not our staging folder
        raise OSError(exc.errno, f"cannot write here ({exc.strerror})", str(out.parent)) from None
    with folder as tmp:
        staged = Path(tmp) / out.name
        report = make(staged)
        if report is not None and not report.passed:
            raise ParityError(report, out)
        for companion in companions:  # before the artifact: it is never seen without them
            if companion(staged).exists():
                os.replace(companion(staged), companion(out))
        os.replace(staged, out)
    return report
