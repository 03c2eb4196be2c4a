"""The backend registry: the built-in backend modules (one line each below) and any that
other distributions declare under the ``srgan_toolkit.backends`` entry-point group (a
``BackendSpec``). Nothing else names the backends: a new one is its module plus one line."""

from __future__ import annotations

import importlib
import logging
from importlib.metadata import entry_points

from ..core.errors import UserError, first_line
from .spec import BackendSpec

log = logging.getLogger(__name__)

# Module (in this package) -> its SPEC. The order is the order of tables and listings.
BUILTIN = (
    "pytorch",
    "onnxrt",
    "openvino",
    "tensorrt",
    "aoti",
)
ENTRY_POINT_GROUP = "srgan_toolkit.backends"

_specs: dict[str, BackendSpec] = {}


def register_backend(spec: BackendSpec) -> None:
    """Add (or replace) a backend for this process."""
    if not isinstance(spec, BackendSpec):
        raise TypeError(f"expected a BackendSpec, got {type(spec).__name__}")
    _load()
    _specs[spec.name] = spec


def _load() -> None:
    if _specs:
        return
    for module in BUILTIN:
        spec = importlib.import_module(f"{__package__}.{module}").SPEC
        _specs[spec.name] = spec
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            spec = ep.load()
        except Exception as exc:  # a broken plug-in must not take the built-ins down
            log.warning("backend plug-in %s (%s) not loaded: %s", ep.name, ep.value,
                        first_line(exc))
            continue
        if isinstance(spec, BackendSpec):
            _specs.setdefault(spec.name, spec)
        else:
            log.warning("backend plug-in %s is not a BackendSpec", ep.name)


def backend_specs() -> dict[str, BackendSpec]:
    """Name -> spec of every backend known here, built-ins first."""
    _load()
    return dict(_specs)


def backend_names() -> tuple[str, ...]:
    return tuple(backend_specs())


def backend_spec(name: str) -> BackendSpec:
    specs = backend_specs()
    if name not in specs:
        raise UserError(f"unknown backend {name!r} (auto, {', '.join(specs)})")
    return specs[name]
