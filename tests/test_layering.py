"""The package layering, read from the source: the torch-free base imports nothing above it,
and the runtime and export import the training package only where they need the model's torch
definition or training code (each place named here, with why)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = {"srgan_runtime": REPO / "runtime", "srgan_export": REPO / "export",
            "srgan_train": REPO / "srgan_train"}

# module -> training modules it may import, and why.
ALLOWED_TRAINING_IMPORTS = {
    # The PyTorch backend builds the generator from its torch definition.
    "srgan_runtime.backends.pytorch": {"srgan_train.archs", "srgan_train.checkpoint"},
    # srbench scores every backend with the training package's evaluation protocol.
    "srgan_runtime.bench": {"srgan_train.evaluate"},
    # Export traces the torch model; parity compares against it.
    "srgan_export.onnx_export": {"srgan_train.archs", "srgan_train.checkpoint"},
    "srgan_export.trt_engine": {"srgan_train.checkpoint"},
}


def _modules() -> dict[str, Path]:
    out = {}
    for pkg, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            out[".".join([pkg, *parts])] = path
    return out


def _imports(name: str, path: Path) -> set[str]:
    """Absolute names of everything the module imports, at any depth (lazy imports too)."""
    found = set()
    is_pkg = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_pkg else 0)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found.add(mod)
            found.update(f"{mod}.{a.name}" for a in node.names)
    return found


MODULES = _modules()


def _top(mod: str) -> str:
    return mod.split(".")[0]


@pytest.mark.parametrize("name", sorted(m for m in MODULES if m.startswith("srgan_runtime.core")))
def test_base_imports_nothing_above_it(name: str) -> None:
    above = ("srgan_train", "srgan_export")
    # machine asks torch for the GPU where torch is installed; foreign reads other projects'
    # checkpoints, which need torch by nature (imported only when such a file is opened).
    if name not in ("srgan_runtime.core.machine", "srgan_runtime.core.foreign"):
        above += ("torch",)
    bad = {m for m in _imports(name, MODULES[name])
           if _top(m) in above
           or (m.startswith("srgan_runtime.") and not m.startswith("srgan_runtime.core"))}
    assert not bad, f"{name} imports {sorted(bad)}"


@pytest.mark.parametrize("name", sorted(m for m in MODULES if not m.startswith("srgan_train")))
def test_runtime_and_export_use_training_only_for_model_code(name: str) -> None:
    used = {m for m in _imports(name, MODULES[name]) if _top(m) == "srgan_train"}
    modules = {m for m in used if m in MODULES}  # drop "package.function" spellings
    allowed = ALLOWED_TRAINING_IMPORTS.get(name, set())
    assert modules <= allowed, f"{name} imports {sorted(modules - allowed)} from training"


@pytest.mark.parametrize("name", sorted(m for m in MODULES if m.startswith("srgan_runtime")))
def test_runtime_never_imports_export_except_srbench(name: str) -> None:
    used = {m for m in _imports(name, MODULES[name]) if _top(m) == "srgan_export"}
    # srbench exports the model it times; --backend auto exports a generator once for OpenVINO.
    if name in ("srgan_runtime.bench", "srgan_runtime.onnx_cache"):
        return
    assert not used, f"{name} imports {sorted(used)}"


def test_torch_is_imported_lazily_outside_training() -> None:
    """Module-level ``import torch`` only in the training package: everywhere else it sits
    inside the function that needs it, so the runtime imports without torch."""
    for name, path in MODULES.items():
        if name.startswith("srgan_train"):
            continue
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Import | ast.ImportFrom):
                mods = ([a.name for a in node.names] if isinstance(node, ast.Import)
                        else [node.module or ""])
                assert not any(_top(m) == "torch" for m in mods), f"{name}: top-level torch"


def test_readme_shows_the_current_support_table() -> None:
    from srgan_runtime.backends.support import support_summary

    assert support_summary() in (REPO / "README.md").read_text()
