"""Memory on the CPU: the process's resident size, a model's measured per-tile footprint on its
backend, and the tile that fits a budget.

The default promise (issue "Fast by default"): a run's peak resident memory stays within the
output picture plus ``HEADROOM``. The output canvas and the decoded input are the picture's own
cost; everything else — libraries, weights, the backend's activations for a batch of tiles, the
encoder — has to fit in the headroom, and of those only the activations depend on a setting
(tile side and batch). They grow with the tile's area (a 256-pixel tile of the bundled default
needs ~410 MB in OpenVINO, ~820 MB in ONNX Runtime, ~610 MB in PyTorch), so the tile is chosen
from the footprint measured on the backend itself: two small tiles run once per model, backend
and precision, fitted as ``fixed + per_pixel x area x batch``, and cached by the file's hash.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .backends import open_backend
from .backends.base import Backend
from .core import __version__
from .core.errors import UserError
from .core.files import atomic_write, file_sha256, user_cache_dir

log = logging.getLogger(__name__)

MiB = 1 << 20
HEADROOM = 512 * MiB  # srrun's default budget beyond the output picture ("auto")
# The library's default (an Upscaler inside someone's process, whose size says nothing about
# the upscaling): a fixed budget for the activations of one batch.
ACTIVATION_BUDGET = 320 * MiB
ENCODE_ALLOWANCE = 48 * MiB  # the streaming PNG encoder (~37 MB measured) and small buffers
SAFETY = 0.85  # of the tile budget: allocator slack the two-point fit does not see
PROBE_SIDES = (64, 128)
METHOD = "hwm-2pt-v1"
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": MiB, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str) -> int:
    """``1.5G``, ``800M``, ``2GiB``, ``512MB`` or bytes -> bytes (binary units)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)(i?b)?\s*", str(text).lower())
    if not m or (m.group(3) and not m.group(2) and m.group(3) != "b"):
        raise UserError(f"--max-memory {text!r}: a size such as 1.5G, 800M or 2GiB")
    value = float(m.group(1)) * _UNITS[m.group(2)]
    if not math.isfinite(value) or value < 64 * MiB:
        raise UserError(f"--max-memory {text!r}: at least 64M")
    return int(value)


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def current_rss() -> int | None:
    """Resident bytes of this process now (Linux), else None."""
    return _status_kb("VmRSS")


def peak_rss() -> int | None:
    """Peak resident bytes since start or the last :func:`reset_peak_rss` (Linux)."""
    return _status_kb("VmHWM")


def reset_peak_rss() -> bool:
    """Start a new peak (Linux ``clear_refs`` 5); False where the system does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


@dataclass(frozen=True)
class Footprint:
    """Resident bytes a backend adds for one call on a batch of tiles."""

    fixed: float
    per_pixel: float  # per LR input pixel of each tile in the batch

    def bytes(self, side: int, batch: int = 1) -> float:
        return self.fixed + self.per_pixel * side * side * batch

    def largest_side(self, budget: float, batch: int = 1) -> int:
        """The largest square tile whose footprint fits ``budget`` (0 if none)."""
        room = budget - self.fixed
        if room <= 0 or self.per_pixel <= 0:
            return 0 if room <= 0 else 1 << 30
        return int(math.sqrt(room / (self.per_pixel * batch)))


def measure_footprint(backend: Backend) -> Footprint | None:
    """The footprint measured in a fresh process (in this one, memory freed earlier and still
    resident would hide the growth): the model opened there the same way, then
    :func:`measure_here`. None where that fails or the system cannot tell."""
    import subprocess
    import sys

    path = backend.info.path
    if not path or not Path(path).is_file():
        return None
    # The scale too: a foreign ONNX file without this toolkit's metadata opens only with it.
    cmd = [sys.executable, "-m", "srgan_runtime.memory", path, backend.name, backend.precision,
           str(backend.scale)]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("memory footprint not measured (%s)", exc)
        return None
    try:
        doc = json.loads(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 else None
    except (ValueError, IndexError):
        doc = None
    if not isinstance(doc, dict):
        why = (r.stderr.strip().splitlines() or ["no measurement on this system"])[-1]
        log.warning("memory footprint not measured (%s)", why)
        return None
    return Footprint(float(doc["fixed"]), float(doc["per_pixel"]))


def measure_here(backend: Backend) -> Footprint | None:
    """Run two square tiles (``PROBE_SIDES``, batch 1) and fit the peak resident growth
    above the resident size before them; None where the peak cannot be reset and read."""
    base = current_rss()
    if base is None or not reset_peak_rss():
        return None
    grown = []
    for side in PROBE_SIDES:
        x = np.random.default_rng(0).random((1, backend.channels, side, side), np.float32)
        reset_peak_rss()
        backend.run(x)
        peak = peak_rss()
        if peak is None:
            return None
        grown.append(max(0, peak - base))
    (s1, s2), (g1, g2) = PROBE_SIDES, grown
    per_pixel = max(0.0, (g2 - g1) / (s2 * s2 - s1 * s1))
    fixed = max(0.0, g1 - per_pixel * s1 * s1)
    return Footprint(fixed, per_pixel)


def _cache_file(backend: Backend, sha: str) -> Path:
    key = f"{sha[:32]}-{backend.name}-{backend.precision}"
    return user_cache_dir("footprint") / f"{key}.json"


def footprint(backend: Backend, use_cache: bool = True) -> Footprint | None:
    """The backend's measured footprint, from the cache or measured now (about a second)."""
    path = Path(backend.info.path) if backend.info.path else None
    if path is None or not path.is_file():
        return measure_footprint(backend)
    sha = file_sha256(path)
    cache = _cache_file(backend, sha)
    if use_cache and cache.is_file():
        try:
            doc = json.loads(cache.read_text())
            if doc.get("method") == METHOD and doc.get("version") == __version__:
                return Footprint(float(doc["fixed"]), float(doc["per_pixel"]))
        except (OSError, ValueError, KeyError, TypeError):
            pass
    log.info("measuring the memory footprint of %s on %s once...", path.name, backend.name)
    fp = measure_footprint(backend)
    if fp is not None and use_cache:
        text = json.dumps({**asdict(fp), "method": METHOD, "version": __version__,
                           "sha256": sha, "backend": backend.name,
                           "precision": backend.precision})
        try:
            atomic_write(cache, lambda tmp: tmp.write_text(text))
        except OSError as exc:
            log.warning("footprint cache %s not writable (%s)", cache.parent, exc)
    return fp


def tile_budget(fixed_cost: float, budget: float) -> float:
    """What is left for the backend's activations of ``budget`` once ``fixed_cost`` (resident
    process, output canvas, input, encoder) is paid, with the safety margin."""
    return SAFETY * (budget - fixed_cost - ENCODE_ALLOWANCE)


def _main() -> None:
    """``python -m srgan_runtime.memory MODEL BACKEND PRECISION SCALE``: print the footprint as
    JSON (null where it cannot be measured)."""
    import sys

    model, name, precision, scale = sys.argv[1:5]
    fp = measure_here(open_backend(model, name, "cpu", precision, scale=int(scale), cache=False))
    print(json.dumps(None if fp is None else asdict(fp)))


if __name__ == "__main__":
    _main()
