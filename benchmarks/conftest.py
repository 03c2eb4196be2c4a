"""Benchmarks are measurements, not tests: run them on an idle machine.

``pytest benchmarks --benchmark-disable`` (smoke mode, part of ``make test``) runs each once so
they cannot rot; ``make bench`` records timings into benchmarks/results/.
"""

from __future__ import annotations

import pytest


def pytest_benchmark_update_machine_info(config, machine_info: dict) -> None:
    from srgan_runtime.core.machine import machine_info as ours

    machine_info["srtoolkit"] = ours()


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory,
                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Caches (exported models, measured radii) go to a folder of this session."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "xdg-cache"))
