"""The README and docs/ as a newcomer meets them: the README fits in a few screens, and every
path, link and ``make`` target they name exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
# Backticked repository paths: a top-level folder of this project, then a path.
PATH = re.compile(r"`((?:runtime|export|srgan_train|benchmarks|tests|docs|\.ci)/[^`\s*]*)`")
LINK = re.compile(r"\]\(([^)\s]+)\)")
MAKE = re.compile(r"`make ([a-z][a-z-]*)")


def _id(path: Path) -> str:
    return str(path.relative_to(REPO))


def test_readme_is_at_most_250_lines() -> None:
    assert len((REPO / "README.md").read_text().splitlines()) <= 250


@pytest.mark.parametrize("doc", DOCS, ids=_id)
def test_every_named_path_exists(doc: Path) -> None:
    missing = []
    for raw in PATH.findall(doc.read_text()):
        path = raw.split("::")[0].rstrip(".,:;")
        if "<" not in path and not (REPO / path).exists():
            missing.append(raw)
    assert missing == []


@pytest.mark.parametrize("doc", DOCS, ids=_id)
def test_every_relative_link_resolves(doc: Path) -> None:
    broken = []
    for target in LINK.findall(doc.read_text()):
        if re.match(r"(https?:|mailto:|#)", target):
            continue
        if not (doc.parent / target.split("#")[0]).exists():
            broken.append(target)
    assert broken == []


def _make_targets() -> set[str]:
    text = (REPO / "Makefile").read_text()
    return set(re.findall(r"^([a-z][a-z-]*):", text, re.M))


@pytest.mark.parametrize("doc", DOCS, ids=_id)
def test_every_make_target_exists(doc: Path) -> None:
    assert set(MAKE.findall(doc.read_text())) <= _make_targets()


@pytest.mark.parametrize("doc", DOCS, ids=_id)
def test_docs_speak_of_machines_and_dates_not_sessions(doc: Path) -> None:
    text = doc.read_text()
    assert not re.search(r"\b(this|previous|last|next) session\b", text, re.I)


def test_the_path_check_finds_a_missing_path(tmp_path: Path) -> None:
    assert PATH.findall("see `runtime/no_such_module.py` and `tests/test_x.py::case`") == [
        "runtime/no_such_module.py", "tests/test_x.py::case"]


DOTTED = re.compile(r"`(srgan_(?:runtime|train|export)(?:\.[A-Za-z_][A-Za-z0-9_]*)+)")


@pytest.mark.parametrize("doc", DOCS, ids=_id)
def test_every_named_module_exists(doc: Path) -> None:
    """``srgan_train.metrics`` was named in the README long after it moved to the base."""
    import importlib

    missing = []
    for name in set(DOTTED.findall(doc.read_text())):
        parts = name.split(".")
        for k in range(len(parts), 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:k]))
            except ImportError:
                continue
            try:
                for attr in parts[k:]:
                    obj = getattr(obj, attr)
            except AttributeError:
                missing.append(name)
            break
        else:
            missing.append(name)
    assert missing == []
