"""Shared fixtures: the image sets (skipped with a reason where absent) and small inputs."""

from __future__ import annotations

import ast
import inspect
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory,
                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Caches (engines, exported models, measured radii) go to a folder of the test session,
    never the user's; subprocesses inherit it."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "xdg-cache"))


@pytest.fixture(autouse=True)
def _fp32_defaults_on_any_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--precision auto`` picks bf16 on CPUs with native bf16; the tests compare default runs
    with fp32 references, so they pin the detection off (test_precision_auto covers both)."""
    monkeypatch.setenv("SRGAN_NATIVE_BF16", "0")


@pytest.fixture(autouse=True)
def _keep_sigchld_handler() -> Iterator[None]:
    """A DataLoader with workers installs a process-wide SIGCHLD handler and never removes it;
    with it left behind, a later test's subprocess exit crashed the test process (SIGSEGV,
    reproduced: test_data's 2-worker loader, then test_hostile_inputs' subprocesses)."""
    before = signal.getsignal(signal.SIGCHLD)
    yield
    signal.signal(signal.SIGCHLD, before)


def data_root() -> Path:
    """``SR_DATA_DIR`` or ``../shared/data`` beside the repository."""
    return Path(os.environ.get("SR_DATA_DIR", REPO.parent / "shared" / "data")).resolve()


def image_set(name: str) -> Path:
    path = data_root() / name
    if not (path / "HR").is_dir():
        pytest.skip(f"image set {name} not found at {path} (set SR_DATA_DIR to the shared data)")
    return path


@pytest.fixture
def set5() -> Path:
    return image_set("Set5")


@pytest.fixture
def t91() -> Path:
    return image_set("T91")


@pytest.fixture
def textures(tmp_path: Path) -> Path:
    """A flat folder of 6 procedural 96x128 images."""
    from srgan_runtime.core.synth import write_textures

    folder = tmp_path / "tex"
    write_textures(folder, 6, (96, 128), seed=1)
    return folder


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def generator_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny x4 generator with weights perturbed away from the near-bicubic start, so the
    learned branch matters in parity checks."""
    import torch

    from srgan_train.archs import build_generator
    from srgan_train.checkpoint import save_generator
    from srgan_train.config import preset_config

    torch.manual_seed(0)
    g = build_generator(preset_config("tiny", 4)).eval()
    with torch.no_grad():
        for p in g.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    path = tmp_path_factory.mktemp("gen") / "tiny.safetensors"
    save_generator(g, path, preset="tiny", step=42)
    return path


@pytest.fixture(scope="session")
def bn_generator_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The seed preset (x2, BatchNorm, dropout) with non-trivial BN statistics."""
    import torch

    from srgan_train.archs import build_generator
    from srgan_train.checkpoint import save_generator
    from srgan_train.config import preset_config

    torch.manual_seed(1)
    g = build_generator(preset_config("seed", 2)).eval()
    with torch.no_grad():
        for m in g.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    path = tmp_path_factory.mktemp("gen") / "seed.safetensors"
    save_generator(g, path, preset="seed", step=7)
    return path


# --- the fast tier ------------------------------------------------------------------------------
# A test is ``slow`` when it (or a helper or fixture of its module that it uses, at any depth)
# spawns a process, starts a server or a Ray cluster, exports or compiles a model, trains, or
# drives a browser: read from the source, so a new test of that kind is marked without anyone
# remembering to. ``make test-fast`` runs the rest; CI runs everything.
HEAVY = re.compile(
    r"subprocess|Popen|import ray|ray\.init|run_ray_job|export_onnx|export_aoti|quantize_int8|"
    r"build_engine|torch\.compile|\"--compile\"|compile=|Trainer\(|webdriver|make_server|"
    r"create_server|serve_process|_srrun\(|_srtrain\(|_cli\(|sys\.executable|bench_cmd|"
    r"measure_effective_radius|effective_radius\(|measure_footprint|footprint\(|torchrun"
)


def _heavy_names(tree: ast.Module) -> set[str]:
    """Module-level functions (helpers and fixtures) that do heavy work, directly or through
    each other."""
    bodies = {n.name: ast.get_source_segment(_SOURCES[id(tree)], n) or ""
              for n in tree.body if isinstance(n, ast.FunctionDef)}
    heavy = {name for name, src in bodies.items() if HEAVY.search(src)}
    grew = True
    while grew:
        grew = False
        for name, src in bodies.items():
            if name not in heavy and any(re.search(rf"\b{h}\b", src) for h in heavy):
                heavy.add(name)
                grew = True
    return heavy


_SOURCES: dict[int, str] = {}
_HEAVY: dict[str, set[str]] = {}


def _is_heavy(item: pytest.Item) -> bool:
    path = str(item.path)
    if path not in _HEAVY:
        source = Path(path).read_text()
        tree = ast.parse(source)
        _SOURCES[id(tree)] = source
        _HEAVY[path] = _heavy_names(tree)
    func = getattr(item, "function", None)
    if func is None:
        return False
    heavy = _HEAVY[path]
    try:
        source = inspect.getsource(func)
    except (OSError, TypeError):
        source = ""
    if HEAVY.search(source) or any(re.search(rf"\b{h}\b", source) for h in heavy):
        return True
    return any(f in heavy for f in getattr(item, "fixturenames", ()))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    slow = pytest.mark.slow
    for item in items:
        if "slow" not in item.keywords and _is_heavy(item):
            item.add_marker(slow)
