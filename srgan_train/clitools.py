"""Shared command-line plumbing: one-line errors, exit codes and logging for all three CLIs."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

import click

from . import __version__
from .errors import UserError


class ErrorHandlingGroup(click.Group):
    """A click group that turns :class:`UserError` and file-system errors into one line and
    exit code 2, other failures into one line and exit code 1; ``--debug`` re-raises."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except UserError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"{ctx.info_name}: error: {exc}", err=True)
            ctx.exit(2)
        except OSError as exc:  # file-system trouble (permissions, full disk, missing folder)
            if ctx.obj and ctx.obj.get("debug"):
                raise
            where = f"{exc.filename}: " if exc.filename else ""
            click.echo(f"{ctx.info_name}: error: {where}{exc.strerror or exc}", err=True)
            ctx.exit(2)
        except KeyboardInterrupt:
            click.echo(f"{ctx.info_name}: interrupted", err=True)
            ctx.exit(130)
        except Exception as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            click.echo(
                f"{ctx.info_name}: internal error: {type(exc).__name__}: {first} "
                "(rerun with --debug for the traceback)",
                err=True,
            )
            ctx.exit(1)


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
