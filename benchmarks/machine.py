"""Names the machine a benchmark ran on (CPU model, cores, GPU) for result files and tables."""

from __future__ import annotations

import os
import platform
import re
import sys


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def machine_info() -> dict[str, object]:
    info: dict[str, object] = {"cpu": cpu_model(), "cores": os.cpu_count(),
                               "python": platform.python_version()}
    try:
        import torch

        info["torch"] = torch.__version__
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


def slug() -> str:
    """A file-name-safe machine name, e.g. ``amd-epyc-2c``."""
    info = machine_info()
    name = str(info.get("gpu") or info["cpu"])
    base = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()
    return f"{base}-{info['cores']}c" if "gpu" not in info else base


if __name__ == "__main__":
    print(slug() if sys.argv[1:] == ["--slug"] else machine_info())
