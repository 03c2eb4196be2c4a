"""File helpers: atomic writes, output checks, image listing, hashing."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from .errors import UserError

# Read as inputs (GIF: still images; animated ones are skipped with a reason by srrun).
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif"})


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name (hidden files ignored)."""
    return sorted(
        p
        for p in Path(folder).iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it into place,
    so readers never see a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:  # name the folder the user chose, not our temp file
        raise OSError(exc.errno, f"cannot write here ({exc.strerror})", str(path.parent)) from None
    os.close(fd)
    try:
        write(Path(tmp))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 is not what a user expects of outputs
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def exists_message(path: Path, skip_hint: bool = False) -> str:
    """The one wording for an output that is already there."""
    extra = " or --skip-existing" if skip_hint else ""
    return f"{path}: exists (use --overwrite{extra} to replace it)"


def folder_problem(folder: Path) -> str | None:
    """Why files cannot be written into ``folder`` (missing folders are created on demand),
    or None: checked before any work, so that no result is computed only to be lost."""
    p = Path(folder)
    while not p.exists() and p.parent != p:
        p = p.parent
    if p.exists() and not p.is_dir():
        return f"cannot write into {folder}: {p} is a file, not a folder"
    if p.exists() and read_only(p):
        return (f"cannot write into {folder}: {p} is on a read-only file system (permissions "
                "cannot change that; write elsewhere)")
    if p.exists() and not os.access(p, os.W_OK | os.X_OK):
        return f"cannot write into {folder}: permission denied"
    return None


def read_only(path: Path) -> bool:
    """Whether ``path`` lies on a file system mounted read-only (False where unknown)."""
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):  # AttributeError: no statvfs (Windows)
        return False


def check_output_file(path: Path, what: str = "output file", overwrite: bool = True) -> None:
    """Refuse, before any work, an output file that could not be written afterwards: a
    folder's name, a path inside a file, an unwritable folder, or (without ``overwrite``) an
    existing file."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a folder, not a {what} name")
    if path.exists() and not overwrite:
        raise UserError(exists_message(path))
    problem = folder_problem(path.parent)
    if problem:
        raise UserError(f"{path}: {problem}")


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def user_cache_dir(kind: str) -> Path:
    """``$XDG_CACHE_HOME/srgan-toolkit/<kind>`` (``~/.cache`` without it): built engines,
    exported models, measured radii. Created by whoever writes into it."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "srgan-toolkit" / kind
