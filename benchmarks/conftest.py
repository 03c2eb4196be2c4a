"""Benchmarks are measurements, not tests: run them on an idle machine.

``pytest benchmarks --benchmark-disable`` (smoke mode, part of ``make test``) runs each once so
they cannot rot; ``make bench`` records timings into benchmarks/results/.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def pytest_benchmark_update_machine_info(config, machine_info: dict) -> None:
    from machine import machine_info as ours

    machine_info["srtoolkit"] = ours()
