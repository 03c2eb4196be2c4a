"""Benchmarks are measurements, not tests: run them on an idle machine.

``pytest benchmarks --benchmark-disable`` (smoke mode, part of ``make test``) runs each once so
they cannot rot; ``make bench`` records timings into benchmarks/results/.
"""

from __future__ import annotations


def pytest_benchmark_update_machine_info(config, machine_info: dict) -> None:
    from srgan_runtime.core.machine import machine_info as ours

    machine_info["srtoolkit"] = ours()
