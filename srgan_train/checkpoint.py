"""Generator files (safetensors + metadata) and full training checkpoints, written atomically.

Nothing here unpickles arbitrary objects: generator files are safetensors, and training
checkpoints are read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from srgan_runtime.core import __version__
from srgan_runtime.core.errors import UserError, first_line
from srgan_runtime.core.files import atomic_write
from srgan_runtime.core.fitting import fit_batch, unfit_output
from srgan_runtime.core.foreign import load_module as load_foreign
from srgan_runtime.core.generator import (
    ARCH,
    FORMAT,
    FORMAT_VERSION,
    generator_config,
    read_generator_metadata,
    read_safetensors_header,
)
from srgan_runtime.core.modelinfo import describe
from srgan_runtime.core.statedict import mismatch_text

from .archs import Generator, build_generator, subpixel_tail
from .config import GeneratorConfig


@dataclass
class GeneratorFile:
    """A loaded generator file: the model (eval mode) and its metadata."""

    model: Generator
    config: GeneratorConfig
    metadata: dict[str, str] = field(default_factory=dict)
    path: Path | None = None

    @property
    def scale(self) -> int:
        return self.config.scale

    @property
    def step(self) -> int:
        return int(self.metadata.get("step", "0"))


def _plain_state(model: nn.Module) -> dict[str, torch.Tensor]:
    # safetensors refuses shared or non-contiguous storage; copy to be safe.
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}


def save_generator(
    model: Generator,
    path: Path,
    *,
    preset: str,
    step: int,
    extra: dict[str, Any] | None = None,
) -> None:
    """Write the deployable generator: safetensors weights plus self-describing metadata."""
    from safetensors.torch import save_file

    cfg = model.config
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "arch": ARCH,
        "preset": preset,
        "scale": str(cfg.scale),
        "channels": str(cfg.channels),
        "blocks": str(cfg.blocks),
        "block": cfg.block,
        "config": cfg.to_json(),
        "value_range": "0-1",
        "colour_order": "RGB",
        "layout": "NCHW",
        "toolkit_version": __version__,
        "step": str(step),
    }
    for k, v in (extra or {}).items():
        meta[k] = v if isinstance(v, str) else json.dumps(v)
    state = _plain_state(model)
    atomic_write(Path(path), lambda tmp: save_file(state, str(tmp), metadata=meta))


def expected_tensors(cfg: GeneratorConfig) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor a generator of ``cfg`` stores, found without allocating
    any weights (the network is built on torch's ``meta`` device)."""
    with torch.device("meta"):
        model = build_generator(cfg)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _describe_mismatch(expected: dict[str, tuple[int, ...]],
                       found: dict[str, tuple[int, ...]]) -> str:
    shapes = [(k, found[k], expected[k]) for k in sorted(set(expected) & set(found))
              if expected[k] != found[k]]
    return mismatch_text(sorted(set(expected) - set(found)), sorted(set(found) - set(expected)),
                         shapes, "the config")


_FLOAT_DTYPES = frozenset({"F16", "BF16", "F32", "F64"})
_INT_DTYPES = frozenset({"I64", "I32"})


def check_generator_tensors(path: Path, cfg: GeneratorConfig) -> None:
    """Compare the tensors listed in the file's header (names, shapes, dtypes) with what
    ``cfg`` builds, before any weights are read or a network allocated: a small file whose
    config claims a huge network is refused here instead of exhausting memory."""
    try:
        header = read_safetensors_header(path)
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: corrupt generator file ({first_line(exc)})") from None
    found = {k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__"}
    expected = expected_tensors(cfg)
    if found != expected:
        raise UserError(f"{path}: weights do not match the stored config "
                        f"({_describe_mismatch(expected, found)})")
    for name, spec in header.items():
        # Weights are floating point; BatchNorm's step counter is an integer.
        kinds = _INT_DTYPES if name.endswith("num_batches_tracked") else _FLOAT_DTYPES
        if name != "__metadata__" and spec.get("dtype") not in kinds:
            raise UserError(f"{path}: tensor {name} has dtype {spec.get('dtype')}")


def load_generator(path: Path, device: str | torch.device = "cpu") -> GeneratorFile:
    """Load a generator file into an eval-mode model; raises UserError on any mismatch.

    Nothing is allocated before the stored config has been checked against the tensors the
    file really holds (names and shapes), so the memory used is bounded by the file's size.
    """
    from safetensors.torch import load_file

    path = Path(path)
    meta = read_generator_metadata(path)
    cfg = generator_config(path, meta)
    check_generator_tensors(path, cfg)
    try:
        state = load_file(str(path), device="cpu")
    except Exception as exc:
        raise UserError(f"{path}: corrupt generator weights ({first_line(exc)})") from None
    model = build_generator(cfg)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise UserError(f"{path}: weights do not match the stored config "
                        f"({first_line(exc)})") from None
    model.eval().to(device)
    return GeneratorFile(model=model, config=cfg, metadata=meta, path=path)


# A training checkpoint carries a digest of everything in it: torch.load checks neither the
# zip's CRCs nor anything else, so flipped bytes in a tensor would otherwise train on silently.
DIGEST_METHOD = "sha256-state-v1"
PREVIOUS = "previous.pt"  # the checkpoint before the last, kept beside it


def state_digest(state: Any) -> str:
    """SHA-256 over a checkpoint's contents: every tensor's name, dtype, shape and bytes, and
    every plain value's type and repr, in a fixed order (the ``digest`` entry excluded)."""
    h = hashlib.sha256()

    def walk(key: str, value: Any) -> None:
        if isinstance(value, torch.Tensor):
            t = value.detach().to("cpu").contiguous()
            h.update(f"{key}|tensor|{t.dtype}|{tuple(t.shape)}|".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy())
        elif isinstance(value, dict):
            h.update(f"{key}|dict|{len(value)}|".encode())
            for k in sorted(value, key=str):
                walk(f"{key}/{k}", value[k])
        elif isinstance(value, list | tuple):
            h.update(f"{key}|{type(value).__name__}|{len(value)}|".encode())
            for i, item in enumerate(value):
                walk(f"{key}/{i}", item)
        else:
            h.update(f"{key}|{type(value).__name__}|{value!r}|".encode())

    walk("", {k: v for k, v in state.items() if k != "digest"})
    return h.hexdigest()


def save_training_state(state: dict[str, Any], path: Path) -> None:
    """Write a full training checkpoint with its digest, atomically; the one it replaces is
    kept as ``previous.pt`` beside it (a damaged last checkpoint then costs one interval)."""
    path = Path(path)
    sealed = {**state, "digest": {"method": DIGEST_METHOD, "sha256": state_digest(state)}}
    staging = path.with_name(f".{path.name}.new")
    atomic_write(staging, lambda tmp: torch.save(sealed, tmp))
    if path.exists():
        os.replace(path, path.with_name(PREVIOUS))
    os.replace(staging, path)


def load_training_state(path: Path, offer_previous: bool = True) -> dict[str, Any]:
    """Read a training checkpoint without unpickling arbitrary objects, and check it against
    its digest; a damaged one is refused in one line that offers ``previous.pt`` where that
    one is intact."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such training checkpoint")
    def hint() -> str:  # read only when this one is damaged: it costs a second load
        return _previous_hint(path) if offer_previous else ""

    try:
        state = safe_torch_load(path, "training checkpoint")
    except UserError as exc:
        raise UserError(f"{exc}{hint()}") from None
    if not isinstance(state, dict) or state.get("format") != "srgan-toolkit/train-state":
        raise UserError(f"{path}: not a training checkpoint of this toolkit")
    stored = state.pop("digest", None)  # checkpoints written before digests have none
    if stored is not None and (not isinstance(stored, dict)
                               or stored.get("method") != DIGEST_METHOD
                               or stored.get("sha256") != state_digest(state)):
        raise UserError(f"{path}: damaged: its contents do not match the digest written with "
                        f"it (a disk, copy or transfer error){hint()}")
    return state


def _previous_hint(path: Path) -> str:
    """What to do about a damaged checkpoint: resume from the one before it, if intact."""
    prev = path.with_name(PREVIOUS)
    if prev == path or not prev.is_file():
        return ""
    try:
        step = load_training_state(prev, offer_previous=False).get("step", "?")
    except UserError:
        return f"; {prev} is damaged too"
    return (f"; the checkpoint before it is intact: 'mv {prev} {path}' resumes from step "
            f"{step}")


def safe_torch_load(path: Path, what: str) -> Any:
    """``torch.load(weights_only=True)`` with one-line errors. A file that needs full unpickling
    is refused, and PyTorch's advice to retry with ``weights_only=False`` (which would run the
    file's code) is never repeated."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise UserError(f"{path}: refused: the {what} holds Python objects beyond tensors and "
                        "plain data, which this toolkit never unpickles (it may be malicious)"
                        ) from None
    except Exception as exc:
        raise UserError(f"{path}: corrupt or foreign {what} ({_safe_reason(exc)})") from None


def _safe_reason(exc: BaseException) -> str:
    """The first line of a loading error, minus any advice to disable ``weights_only``."""
    line = first_line(exc)
    if "weights_only" in line:
        return "not a plain tensor checkpoint"
    return line


def _own_generator(info: Any, device: str | torch.device) -> nn.Module:
    return load_generator(Path(info.path), device=device).model


def _spandrel(info: Any, device: str | torch.device) -> nn.Module:
    return load_foreign(Path(info.path), str(device))


# The architectures PyTorch weights come in, by model format: this toolkit's generator beside
# every architecture spandrel reads. A new trainable architecture is a loader and a row here.
ARCHITECTURES = {"generator": _own_generator, "checkpoint": _spandrel}
PURPOSES = ("reference", "run", "evaluate")


def load_module(info: Any, device: str | torch.device = "cpu",
                purpose: str = "reference") -> nn.Module:
    """The eval-mode network of a model with PyTorch weights (its ``ModelInfo``), for one
    purpose: ``reference``, fp32 as stored (export traces it, parity compares with it);
    ``run``, the runtime's form (this toolkit's generator with its tail moved before the last
    PixelShuffle: the same function, wider and faster kernels); ``evaluate``, a network that
    takes any RGB image (another project's fed as every backend feeds it: size requirements
    padded, a grey network plane by plane)."""
    if purpose not in PURPOSES:
        raise ValueError(f"purpose {purpose!r} is not one of {PURPOSES}")
    loader = ARCHITECTURES.get(info.format)
    if loader is None:
        raise UserError(f"{info.path}: a {info.format} file holds no PyTorch weights")
    net = loader(info, device)
    if purpose == "run" and info.format == "generator":
        net = subpixel_tail(net)
    if purpose == "evaluate" and info.format == "checkpoint":
        net = _Fitted(net, info)
    return net.eval()


def load_network(path: Path, device: str | torch.device = "cpu") -> tuple[nn.Module, Any]:
    """:func:`load_module` for evaluation, from a path; with the model's description."""
    info = describe(path)
    return load_module(info, device, "evaluate"), info


class _Fitted(nn.Module):
    def __init__(self, net: nn.Module, info: Any) -> None:
        super().__init__()
        self.net, self.info = net, info

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        i = self.info
        fitted, shape = fit_batch(x.detach().cpu().numpy(), i.channels, i.min_input_size,
                                  i.input_multiple, i.square_only)
        y = self.net(torch.from_numpy(fitted).to(x.device))
        return unfit_output(y, shape, i.scale)
