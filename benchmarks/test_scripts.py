"""Smoke runs of the stand-alone benchmark scripts, so they cannot rot between measurement runs
(tiny sizes: the numbers they print here mean nothing)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def test_tile_ratios_script(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    r = subprocess.run([sys.executable, str(HERE / "tile_ratios.py"), "--preset", "tiny",
                        "--tile", "24", "--tiles", "1", "--rounds", "1", "--json", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())
    rows = {row["variant"]: row for row in res["rows"]}
    assert rows["torch eager fp32 NCHW (baseline)"]["speedup"] == 1.0
    assert all(row["parity_gate_passed"] for row in res["rows"])
    assert res["matmul_peak_gflops"]["fp32"] > 0
