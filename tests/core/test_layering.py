"""The package layering, read from the source (function-level imports included): four layers,
each importing only itself and what lies below; no import cycle between first-party modules;
the torch-free base imports nothing above it; the runtime and export import the training
package only where they need the model's torch definition (each place named here, with why);
the runtime never imports the export stage (it reaches the ONNX converter through an entry
point)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = {"srgan_runtime": REPO / "runtime", "srgan_export": REPO / "export",
            "srgan_train": REPO / "srgan_train"}

# module -> training modules it may import, and why.
ALLOWED_TRAINING_IMPORTS = {
    # The PyTorch backend builds the generator from its torch definition.
    "srgan_runtime.backends.pytorch": {"srgan_train.archs", "srgan_train.checkpoint"},
    # srbench scores every backend with the training package's evaluation protocol.
    "srgan_export.bench": {"srgan_train.evaluate"},
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


# Bottom to top. A module may import its own layer and the layers below it.
LAYERS = ("srgan_runtime.core", "srgan_train", "srgan_runtime", "srgan_export")


def layer_of(module: str) -> int:
    """Index in LAYERS of the most specific layer that holds ``module``."""
    best = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len)
    return LAYERS.index(best)


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


def _resolve(mod: str) -> str | None:
    """The first-party module an imported name lives in (``pkg.module.function`` -> its
    module), or None for a third-party name."""
    while mod and mod not in MODULES:
        mod = mod.rpartition(".")[0]
    return mod or None


def module_graph() -> dict[str, set[str]]:
    """First-party module -> first-party modules it imports (at any depth in the file)."""
    graph = {}
    for name, path in MODULES.items():
        found = {_resolve(m) for m in _imports(name, path)}
        graph[name] = {m for m in found if m and m != name}
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_no_first_party_import_cycle() -> None:
    assert import_cycles(module_graph()) == []


def test_cycle_finder_finds_a_cycle() -> None:
    """The check above cannot pass vacuously."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert import_cycles(graph) == [["a", "b", "c"]]


def test_every_import_points_down_or_sideways() -> None:
    up = sorted(f"{a} -> {b}" for a, targets in module_graph().items() for b in targets
                if layer_of(b) > layer_of(a))
    assert up == []


def test_runtime_never_imports_export() -> None:
    edges = sorted(f"{a} -> {b}" for a, targets in module_graph().items() for b in targets
                   if a.startswith("srgan_runtime") and b.startswith("srgan_export"))
    assert edges == []


def test_the_runtime_finds_the_onnx_converter_through_its_entry_point() -> None:
    from importlib.metadata import entry_points

    from srgan_runtime.onnx_cache import ENTRY_POINT_GROUP

    (ep,) = [e for e in entry_points(group=ENTRY_POINT_GROUP) if e.name == "onnx"]
    assert ep.value == "srgan_export.onnx_export:convert_for_runtime"


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


def test_architecture_doc_shows_the_current_support_table() -> None:
    from srgan_runtime.backends.support import support_summary

    assert support_summary() in (REPO / "docs" / "architecture.md").read_text()


def test_readme_layout_table_lists_the_layers_in_order() -> None:
    import re

    text = (REPO / "README.md").read_text()
    section = text[text.index("## Layout"):]
    rows = re.findall(r"^\| `([a-z_.]+)` \| `([a-z_/]+)/` \|", section, re.M)
    assert tuple(name for name, _ in rows) == LAYERS
    for name, folder in rows:
        package = name.split(".")[0]
        assert (PACKAGES[package] / folder.removeprefix(PACKAGES[package].name + "/")
                ).is_dir() or (REPO / folder).is_dir(), folder


MAX_FUNCTION_LINES = 100


def test_no_function_is_longer_than_100_lines() -> None:
    """Counted from the first decorator to the last line, so that a command's options count:
    they are generated from the settings dataclasses instead of written out."""
    long = []
    folders = [REPO / f for f in ("runtime", "export", "srgan_train", "benchmarks", "tests")]
    for path in sorted(p for folder in folders for p in folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                lines = node.end_lineno - start + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(REPO)}:{start} {node.name} ({lines} lines)")
    assert long == []
