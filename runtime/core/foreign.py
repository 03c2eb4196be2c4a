"""Checkpoints of other projects (``.pth``, ``.pt``, ``.ckpt``, ``.safetensors``: ESRGAN,
Real-ESRGAN Compact, SwinIR, HAT, SPAN, ...), read through spandrel.

Never unpickled: pickle files are read with ``torch.load(weights_only=True)`` (tensors and plain
containers only), so a file that would run code is refused before anything in it runs. spandrel
(``[spandrel]`` extra; only its main, permissively licensed registry) then detects the
architecture and its hyper-parameters from the state dict.

torch and spandrel are imported only when such a file is opened, so the base stays torch-free
for everything else.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import pickle
import re
import sys
import types
import warnings
import zipfile
from functools import lru_cache
from pathlib import Path

from .errors import UserError, first_line
from .statedict import load_failure, refuse_nonfinite

log = logging.getLogger(__name__)

PICKLE_SUFFIXES = (".pth", ".pt", ".ckpt")
SUFFIXES = (*PICKLE_SUFFIXES, ".safetensors")
HINT = "pip install 'srgan-toolkit[torch,spandrel]'"
# spandrel's purposes this toolkit runs: one image in, one (possibly larger) image out.
PURPOSES = ("SR", "Restoration")


def _stand_in_torchvision() -> dict[str, types.ModuleType]:
    """Modules that satisfy spandrel's two module-level torchvision imports (LaMa's ``rotate``,
    RestoreFormer's ``normalize``: neither is a super-resolution architecture)."""
    def missing(*_args, **_kwargs):
        raise UserError("this architecture needs torchvision, which is not installed here")

    tv = types.ModuleType("torchvision")
    transforms = types.ModuleType("torchvision.transforms")
    functional = types.ModuleType("torchvision.transforms.functional")
    functional.rotate = functional.normalize = missing  # type: ignore[attr-defined]
    functional.InterpolationMode = types.SimpleNamespace(  # type: ignore[attr-defined]
        NEAREST="nearest", BILINEAR="bilinear", BICUBIC="bicubic")
    tv.transforms, transforms.functional = transforms, functional  # type: ignore[attr-defined]
    return {"torchvision": tv, "torchvision.transforms": transforms,
            "torchvision.transforms.functional": functional}


@lru_cache(maxsize=1)
def import_spandrel() -> types.ModuleType:
    """spandrel, imported so that a missing or broken torchvision cannot stop it.

    PyPI's Linux torchvision wheels are built against PyPI's CUDA torch and fail to import
    beside a CPU torch ("operator torchvision::nms does not exist"); spandrel imports it only
    for two non-SR architectures. Where torchvision does not import, stand-ins are put in place
    for the duration of spandrel's import and removed again, so nothing else sees them.
    """
    try:
        import torch  # noqa: F401
    except ImportError:
        raise UserError(f"foreign checkpoints need torch and spandrel: {HINT}") from None
    before = set(sys.modules)
    try:
        import torchvision  # noqa: F401
    except Exception:
        for name in set(sys.modules) - before:
            if name.startswith("torchvision"):
                del sys.modules[name]
        stand_ins = _stand_in_torchvision()
        sys.modules.update(stand_ins)
        try:
            return _import_spandrel_itself()
        finally:
            for name, module in stand_ins.items():
                if sys.modules.get(name) is module:
                    del sys.modules[name]
    return _import_spandrel_itself()


def _import_spandrel_itself() -> types.ModuleType:
    try:
        import spandrel
    except ImportError as exc:
        raise UserError(f"foreign checkpoints need spandrel ({first_line(exc)}): {HINT}"
                        ) from None
    return spandrel


def _read_failure(exc: BaseException) -> str:
    """Why ``torch.load`` could not read a file, in words (a truncated zip reads as
    ``[Errno 22] Invalid argument`` or a PytorchStreamReader message)."""
    text = str(exc)
    if (isinstance(exc, OSError) and exc.errno in (errno.EINVAL, errno.EIO)) or \
            "PytorchStreamReader" in text or "zip archive" in text:
        return "damaged or truncated"
    return f"{type(exc).__name__}: {first_line(exc)}"


def _is_torchscript(path: Path) -> bool:
    with contextlib.suppress(zipfile.BadZipFile, OSError), zipfile.ZipFile(path) as z:
        return any(n.split("/", 1)[-1].startswith(("code/", "constants.pkl"))
                   for n in z.namelist())
    return False


def read_state_dict(path: Path) -> dict:
    """The tensors of a checkpoint, unwrapped from the containers training projects use
    (``params_ema``, ``params``, ``state_dict``, ``model``, ``module.`` prefixes).

    Pickle formats are read with ``torch.load(weights_only=True)``; anything else a pickle
    holds (a class, a function, a ``__reduce__``) is refused, not run.
    """
    import torch

    path = Path(path)
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        try:
            state = load_file(str(path), device="cpu")
        except Exception as exc:
            raise UserError(f"{path}: not a readable safetensors file ({first_line(exc)})"
                            ) from None
    else:
        if _is_torchscript(path):
            raise UserError(f"{path}: a TorchScript archive, which runs its own code; save the "
                            "model's state_dict() instead")
        try:
            with warnings.catch_warnings():  # e.g. about the pickle protocol: not the user's
                warnings.simplefilter("ignore")
                state = torch.load(str(path), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            log.debug("%s: %s", path, exc)
            if "global" not in str(exc).lower():  # a damaged file, not a forbidden object
                # torch's text opens with advice to load without weights_only: not ours to give
                raise UserError(f"{path}: not a readable PyTorch checkpoint (damaged, or not a "
                                "checkpoint)") from None
            raise UserError(f"{path}: holds Python objects besides tensors, which only full "
                            "unpickling could read and which could run code; refused (re-save "
                            "its state_dict, or convert it to .safetensors)") from None
        except Exception as exc:
            raise UserError(f"{path}: not a readable PyTorch checkpoint ({_read_failure(exc)})"
                            ) from None
    if not isinstance(state, dict):
        raise UserError(f"{path}: holds a {type(state).__name__}, not a state dict")
    state = import_spandrel().canonicalize_state_dict(state)
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise UserError(f"{path}: holds no weights")
    refuse_nonfinite(path, [k for k, v in tensors.items()
                            if v.is_floating_point() and not bool(torch.isfinite(v).all())])
    return tensors


@lru_cache(maxsize=4)
def _load_cached(path: str, mtime_ns: int, size: int):
    spandrel = import_spandrel()
    state = read_state_dict(Path(path))
    try:
        with warnings.catch_warnings():  # e.g. torch.meshgrid's deprecation, from SwinIR
            warnings.simplefilter("ignore")
            desc = spandrel.ModelLoader("cpu").load_from_state_dict(state)
    except spandrel.UnsupportedModelError:
        raise UserError(f"{path}: spandrel recognises no architecture in this checkpoint (it "
                        "knows ESRGAN, Compact, SwinIR, HAT, SPAN, OmniSR, RCAN, DAT and more: "
                        "see its README)") from None
    except Exception as exc:
        arch = re.search(r"loading state_dict for (\w+)", str(exc))
        expected = f"spandrel's {arch[1]}" if arch else "the architecture spandrel detected"
        raise UserError(f"{path}: spandrel could not build the model: "
                        f"{load_failure(exc, expected)}") from None
    if not isinstance(desc, spandrel.ImageModelDescriptor) or desc.purpose not in PURPOSES:
        raise UserError(f"{path}: a {desc.architecture.name} {desc.purpose} model; this toolkit "
                        "runs image-to-image models (super-resolution and restoration)")
    return desc.eval()


def _freeze_reparameterization(model) -> None:
    """SPAN's Conv3XC folds its training branches into ``eval_conv`` on every eval forward
    (rewriting the weights each call: wasted work, and a mutation that crashes the ONNX
    exporter); fold once here and make the refold a no-op."""
    import torch

    with torch.no_grad():
        for module in model.modules():
            if hasattr(module, "eval_conv") and callable(getattr(module, "update_params", None)):
                module.update_params()
                module.update_params = lambda: None


# Per architecture (spandrel's id), what makes a loaded network ready to run and to trace.
_PREPARE = {"SPAN": _freeze_reparameterization}


def load_descriptor(path: Path):
    """spandrel's descriptor of a checkpoint (model on the CPU, eval mode, fp32); cached per
    file version, so describing and then opening a file reads it once."""
    p = Path(path).resolve()
    st = p.stat()
    return _load_cached(str(p), st.st_mtime_ns, st.st_size)


def load_module(path: Path, device: str = "cpu"):
    """A fresh copy of the checkpoint's network (float32, eval mode) on ``device``: callers
    may convert it without touching the cached one."""
    import copy

    desc = load_descriptor(path)
    model = copy.deepcopy(desc.model).float().eval()
    prepare = _PREPARE.get(desc.architecture.id)
    if prepare is not None:
        prepare(model)
    return _own_input(model).eval().to(device)


def _own_input(model):
    """The network fed a copy of its input: some modify it in place (spandrel's RCAN scales
    it by ``rgb_range`` with ``*=``), which would change the caller's batch."""
    from torch import nn

    class OwnInput(nn.Module):
        def __init__(self, net) -> None:
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net(x.clone())

    return OwnInput(model)


def describe_checkpoint(path: Path) -> dict[str, object]:
    """The ``ModelInfo`` fields a checkpoint's descriptor gives."""
    desc = load_descriptor(path)
    req = desc.size_requirements
    multiple = max(1, int(req.multiple_of))
    window = getattr(desc.model, "window_size", None)
    if isinstance(window, int) and window > 1:
        # Window-attention networks pad themselves to a multiple of the window, a size that a
        # traced (ONNX) graph cannot keep symbolic; the runtime pads to it before every backend.
        multiple = math.lcm(multiple, window)
    return {
        "scale": int(desc.scale), "format": "checkpoint", "arch": desc.architecture.id,
        "preset": " ".join(map(str, desc.tags)) or "unknown",
        "precision": "fp16" if str(desc.dtype) == "torch.float16" else "fp32",
        "channels": int(desc.input_channels), "out_channels": int(desc.output_channels),
        "min_input_size": max(1, int(req.minimum)), "input_multiple": multiple,
        "square_only": bool(req.square), "fp16_ok": bool(desc.supports_half),
        "bf16_ok": bool(desc.supports_bfloat16),
        "extra": {"purpose": str(desc.purpose), "tiling": desc.tiling.name.lower(),
                  "spandrel": str(getattr(import_spandrel(), "__version__", ""))},
    }
