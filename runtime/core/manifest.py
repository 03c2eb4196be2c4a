"""The JSON manifest beside a TensorRT engine (``MODEL.plan.json``): what the engine was built
from, for which TensorRT and GPU, and how. Read without TensorRT (engines are opaque)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import __version__
from .errors import UserError

MANIFEST_FORMAT = "srgan-toolkit/trt-engine"
MANIFEST_SUFFIX = ".json"  # MODEL.plan -> MODEL.plan.json
ENGINE_SUFFIXES = (".plan", ".engine", ".trt")


@dataclass
class Manifest:
    """The JSON sidecar of an engine: what it was built from, for, and how."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    precision: str
    strongly_typed: bool
    profile: dict[str, list[int]]
    scale: int
    io: dict[str, dict[str, Any]]
    onnx_sha256: str
    build_options: dict[str, Any]
    model: dict[str, str] = field(default_factory=dict)
    cache_key: str = ""
    build_seconds: float = 0.0
    created: str = ""
    toolkit_version: str = __version__
    format: str = MANIFEST_FORMAT
    parity: dict[str, Any] | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, where: object = "manifest") -> Manifest:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UserError(f"{where}: not valid JSON ({exc.msg})") from None
        if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
            raise UserError(f"{where}: not an engine manifest of this toolkit")
        known = set(cls.__dataclass_fields__)
        try:
            m = cls(**{k: v for k, v in data.items() if k in known})
        except TypeError as exc:
            raise UserError(f"{where}: incomplete engine manifest ({exc})") from None
        return m.validate(where)

    def validate(self, where: object = "manifest") -> Manifest:
        """The fields the runtime reads, typed and in range (the file is untrusted input)."""
        def bad(what: str) -> UserError:
            return UserError(f"{where}: engine manifest {what}")

        if not isinstance(self.scale, int) or isinstance(self.scale, bool) \
                or not 1 <= self.scale <= 16:
            raise bad(f"scale={self.scale!r} is not a whole number in 1..16")
        if self.precision not in ("fp16", "fp32"):
            raise bad(f"precision={self.precision!r} is not fp16 or fp32")
        prof = self.profile
        if not isinstance(prof, dict) or set(prof) < {"min", "opt", "max"}:
            raise bad("profile lacks min/opt/max")
        for key in ("min", "opt", "max"):
            shape = prof[key]
            if not (isinstance(shape, list) and len(shape) == 4
                    and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1
                            for v in shape)):
                raise bad(f"profile {key}={shape!r} is not four positive whole numbers")
        if not isinstance(self.model, dict) or \
                not all(isinstance(v, str) for v in self.model.values()):
            raise bad("model section is not a table of strings")
        radius = self.model.get("receptive_radius", "0") or "0"
        if not radius.isdigit() or int(radius) > 16384:
            raise bad(f"receptive_radius={radius!r} is not a whole number in 0..16384")
        return self


def manifest_path(engine: Path) -> Path:
    return Path(str(engine) + MANIFEST_SUFFIX)


def read_manifest(engine: Path) -> Manifest:
    path = manifest_path(engine)
    if not path.is_file():
        raise UserError(f"{engine}: no manifest {path.name} beside the engine")
    return Manifest.from_json(path.read_text(), path)
