"""``python benchmarks/report_peak.py FILE MODULE|-c CODE ARGS...``: run ``MODULE`` as
``__main__`` (or ``CODE``) and write this process's peak resident bytes to FILE at exit.

A parent's ``wait4`` cannot give that figure: Linux carries the spawning process's peak
across exec. Used by the memory benchmarks and the memory tests; not part of the runtime."""

from __future__ import annotations

import atexit
import runpy
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve()


def _peak_bytes() -> int:
    """VmHWM of this process (Linux), or -1 where unknown."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return -1


def main() -> None:
    # This folder holds scripts named like modules (memory.py, foreign.py): not importable.
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != SCRIPT.parent]
    out = sys.argv[1]
    atexit.register(lambda: Path(out).write_text(str(_peak_bytes())))
    if sys.argv[2] == "-c":
        code, sys.argv = sys.argv[3], ["-c", *sys.argv[4:]]
        exec(compile(code, "<string>", "exec"), {"__name__": "__main__"})
        return
    sys.argv = [sys.argv[2], *sys.argv[3:]]
    runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
