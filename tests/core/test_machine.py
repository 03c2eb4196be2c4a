"""Benchmark labels name the instruction-set level: two machines with the same model name but
different flags (one with AVX-512 bf16, one AVX2 only) no longer share a label."""

from __future__ import annotations

import pytest

from srgan_runtime.core.machine import isa_level, slug


@pytest.mark.parametrize(("flags", "level"), [
    ({"sse2", "avx", "avx2", "fma"}, "avx2"),
    ({"avx2", "avx512f", "avx512bw"}, "avx512"),
    ({"avx2", "avx512f", "avx512_bf16", "avx512_vnni"}, "avx512bf16"),
    ({"avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16"}, "amx"),
    ({"sse2"}, "base"),
])
def test_isa_level(flags: set[str], level: str) -> None:
    assert isa_level(frozenset(flags)) == level


def test_same_model_different_flags_get_different_labels() -> None:
    a = slug({"cpu": "AMD EPYC", "cores": 2, "isa": "avx2"})
    b = slug({"cpu": "AMD EPYC", "cores": 2, "isa": "avx512bf16"})
    assert (a, b) == ("amd-epyc-avx2-2c", "amd-epyc-avx512bf16-2c")
