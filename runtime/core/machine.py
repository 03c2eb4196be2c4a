"""The machine a run or benchmark is on: CPU model and features, cores, GPU, library versions;
and a file-name-safe name for result files. torch and the backends are asked only if installed.

``python -m srgan_runtime.core.machine --slug`` prints the name (the Makefile's bench target).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import platform
import re
import sys

from . import __version__


def _cpuinfo_field(name: str) -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(name):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_model() -> str:
    return _cpuinfo_field("model name") or platform.processor() or platform.machine() or "cpu"


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (Linux ``/proc/cpuinfo``; empty elsewhere)."""
    return frozenset((_cpuinfo_field("flags") or "").split())


# The flags that change which paths are fast here (bf16, int8 dot products, wide vectors).
SPEED_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16",
               "amx_int8")


def isa_level(flags: frozenset[str] | None = None) -> str:
    """The widest instruction set that matters for speed here: ``amx``, ``avx512bf16``,
    ``avx512``, ``avx2`` or ``base``: two machines of the same model name but different flags
    get different benchmark labels."""
    flags = cpu_flags() if flags is None else flags
    for level, needs in (("amx", {"amx_tile"}), ("avx512bf16", {"avx512_bf16"}),
                         ("avx512", {"avx512f"}), ("avx2", {"avx2"})):
        if needs <= flags:
            return level
    return "base"


def native_bf16() -> bool:
    """Whether the CPU computes bf16 natively (AVX512_BF16 or AMX); without it, bf16 is
    emulated and far slower than fp32. ``SRGAN_NATIVE_BF16=0`` or ``1`` overrides the
    detection (a VM that hides flags; tests that need fp32 defaults on any CPU)."""
    forced = os.environ.get("SRGAN_NATIVE_BF16")
    if forced in ("0", "1"):
        return forced == "1"
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def may_have_cuda() -> bool:
    """False where there is certainly no NVIDIA GPU (Linux without the NVIDIA driver's device
    nodes), so that ``--device auto`` need not import torch (~180 MB resident, seconds) to
    learn it; True where a GPU may exist (ask torch then)."""
    if not sys.platform.startswith("linux"):
        return sys.platform.startswith("win")
    return os.path.exists("/dev/nvidiactl") or os.path.exists("/proc/driver/nvidia/version")


def machine_info() -> dict[str, object]:
    flags = cpu_flags()
    info: dict[str, object] = {"cpu": cpu_model(), "cores": os.cpu_count(),
                               "isa": isa_level(flags),
                               "cpu_flags": [f for f in SPEED_FLAGS if f in flags],
                               "python": platform.python_version(), "toolkit": __version__,
                               "native_bf16": native_bf16()}
    if importlib.util.find_spec("torch") is not None:
        import torch

        info["torch"] = torch.__version__
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
            cc = torch.cuda.get_device_capability(0)
            info["compute_capability"] = f"{cc[0]}.{cc[1]}"
    for mod in ("onnxruntime", "openvino", "tensorrt"):
        if importlib.util.find_spec(mod) is not None:
            with contextlib.suppress(Exception):  # a broken install
                info[mod] = __import__(mod).__version__
    return info


def slug(info: dict[str, object] | None = None) -> str:
    """A file-name-safe machine name with its instruction-set level, e.g.
    ``amd-epyc-avx512bf16-2c`` (a GPU: its name)."""
    info = info or machine_info()
    name = str(info.get("gpu") or info["cpu"])
    base = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()
    if "gpu" in info:
        return base
    return f"{base}-{info.get('isa') or isa_level()}-{info['cores']}c"


if __name__ == "__main__":
    print(slug() if sys.argv[1:] == ["--slug"] else machine_info())
