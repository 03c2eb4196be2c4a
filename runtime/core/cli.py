"""Shared command-line plumbing: one-line errors, exit codes and logging for all three CLIs."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable, Iterator

import click

from . import __version__
from .errors import UserError, first_line, range_problem


@contextlib.contextmanager
def one_line_errors(ctx: click.Context, prog: str) -> Iterator[None]:
    """Turn :class:`UserError` and file-system errors into one line and exit code 2, Ctrl-C
    into exit code 130, running out of memory and other failures into one line and exit code
    1; with ``--debug`` (``ctx.obj["debug"]``) they are raised with their traceback."""
    def debug() -> bool:  # read late: the group's own callback sets it
        return bool(ctx.obj and ctx.obj.get("debug"))

    try:
        yield
    except (click.exceptions.Exit, click.ClickException, click.Abort):
        raise
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        ctx.exit(1)
    except UserError as exc:
        if debug():
            raise
        click.echo(f"{prog}: error: {exc}", err=True)
        ctx.exit(2)
    except OSError as exc:  # file-system trouble (permissions, full disk, missing folder)
        if debug():
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        click.echo(f"{prog}: error: {where}{exc.strerror or first_line(exc)}", err=True)
        ctx.exit(2)
    except KeyboardInterrupt:
        click.echo(f"{prog}: interrupted", err=True)
        ctx.exit(130)
    except MemoryError:
        if debug():
            raise
        click.echo(f"{prog}: error: out of memory (use smaller inputs, a smaller --tile or "
                   "--batch, or a machine with more memory)", err=True)
        ctx.exit(1)
    except Exception as exc:
        if debug():
            raise
        click.echo(f"{prog}: internal error: {type(exc).__name__}: {first_line(exc)} "
                   "(rerun with --debug for the traceback)", err=True)
        ctx.exit(1)


class ErrorHandlingGroup(click.Group):
    """A click group whose commands report failures as :func:`one_line_errors` does."""

    def invoke(self, ctx: click.Context):
        with one_line_errors(ctx, ctx.info_name or self.name or "error"):
            return super().invoke(ctx)


class FiniteFloat(click.ParamType):
    """A float option that refuses NaN and infinities (which ``float()`` accepts) and values
    outside ``[lo, hi]`` (open at ``lo`` when ``lo_open``), as a usage error before any work."""

    name = "float"

    def __init__(self, lo: float | None = None, hi: float | None = None,
                 lo_open: bool = False, hi_open: bool = False) -> None:
        self.lo, self.hi, self.lo_open, self.hi_open = lo, hi, lo_open, hi_open

    def convert(self, value, param, ctx):
        problem = range_problem(value, self.lo, self.hi, self.lo_open, self.hi_open)
        if problem:
            self.fail(problem, param, ctx)
        return float(value)


def setup_logging(verbose: bool, *names: str) -> None:
    """Send the named loggers to stderr as ``LEVEL: message``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    for name in names:
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(logging.DEBUG if verbose else logging.INFO)
        logger.propagate = False


def toolkit_group(prog: str, *loggers: str) -> Callable[[Callable[[], None]], click.Group]:
    """Decorator for a CLI's top-level group: ``--version``, ``--debug`` (tracebacks) and
    ``-v`` (log level), one-line errors, and logging for ``loggers``. The decorated function's
    docstring is the group's help."""

    def wrap(fn: Callable[[], None]) -> click.Group:
        @click.group(name=prog, cls=ErrorHandlingGroup, help=fn.__doc__,
                     context_settings={"help_option_names": ["-h", "--help"]})
        @click.version_option(__version__, prog_name=prog)
        @click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
        @click.option("-v", "--verbose", is_flag=True, help="More log output.")
        @click.pass_context
        def group(ctx: click.Context, debug: bool, verbose: bool) -> None:
            ctx.ensure_object(dict)
            ctx.obj["debug"] = debug
            setup_logging(verbose, *loggers)

        return group

    return wrap


def parse_dims(text: str, count: int | tuple[int, ...], example: str) -> tuple[int, ...]:
    """``"AxB[xC...]"`` (``,`` also accepted) as positive whole numbers; ``count`` says how
    many values are allowed. Raises UserError quoting ``example``."""
    counts = (count,) if isinstance(count, int) else count
    try:
        vals = tuple(int(p) for p in text.lower().replace(",", "x").split("x"))
    except ValueError:
        raise UserError(f"{text!r}: expected {example}") from None
    if len(vals) not in counts or min(vals) < 1:
        raise UserError(f"{text!r}: expected {example} with every value >= 1")
    return vals


def require_torch(prog: str) -> None:
    """Exit with one line (status 2) when torch is missing: training and export need it; the
    runtime does not (``srrun`` runs ONNX files without it)."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        click.echo(f"{prog}: error: torch is not installed, and {prog} needs it: pip install "
                   "'srgan-toolkit[torch]' (srrun runs ONNX models without torch)", err=True)
        sys.exit(2)
