"""Settings dataclasses as command-line options: a field declared with :func:`setting` carries
its help, choices and type, and :func:`click_options` turns a dataclass's fields into click
options, so that a setting is written once and every command that takes it (``srrun upscale``,
``srrun serve``, ``srbench``, ``srtrain fit``) offers it with the same name, help and default.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import click

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])
_MISSING = dataclasses.MISSING


@dataclass(frozen=True)
class Cli:
    """How a setting appears on the command line. ``flags``: the option names (default
    ``--field-name``); ``type``: a click type or a callable returning one (evaluated when the
    command is built, for choices that come from a registry); ``flag``: a bare on/off flag;
    ``negate``: the flag that turns a default-on setting off (``--no-cache``); ``default_text``:
    the default as the help shows it, where the value itself says little; ``flag_value``: the
    value of the bare option (``--compile`` alone); ``multiple``: repeatable, a tuple."""

    help: str
    flags: tuple[str, ...] = ()
    type: Any = None
    flag: bool = False
    flag_value: Any = None
    multiple: bool = False
    negate: str | None = None
    metavar: str | None = None
    default_text: str | None = None


def setting(default: Any = _MISSING, *, help: str, factory: Callable[[], Any] | None = None,
            **cli: Any) -> Any:
    """A dataclass field with its command-line description (see :class:`Cli`)."""
    meta = {"cli": Cli(help=help, **cli)}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def cli_fields(cls: type, only: Iterable[str] | None = None,
               skip: Iterable[str] = ()) -> list[dataclasses.Field]:
    """The fields of ``cls`` that have a command-line description, in declaration order
    (``only`` given: in that order)."""
    described = {f.name: f for f in dataclasses.fields(cls) if "cli" in f.metadata}
    names = list(only) if only is not None else list(described)
    unknown = [n for n in names if n not in described]
    if unknown:
        raise ValueError(f"{cls.__name__} has no command-line setting {unknown}")
    return [described[n] for n in names if n not in set(skip)]


def _default(f: dataclasses.Field, defaults: Mapping[str, Any]) -> Any:
    if f.name in defaults:
        return defaults[f.name]
    if f.default is not _MISSING:
        return f.default
    if f.default_factory is not _MISSING:
        return f.default_factory()
    return None


def _option(f: dataclasses.Field, default: Any, overridden: bool) -> Callable[[F], F]:
    spec: Cli = f.metadata["cli"]
    name = "--" + f.name.replace("_", "-")
    flags = spec.flags or (name,)
    kind = spec.type() if callable(spec.type) and not isinstance(spec.type, click.ParamType) \
        and not isinstance(spec.type, type) else spec.type
    kwargs: dict[str, Any] = {"help": spec.help, "metavar": spec.metavar}
    if spec.negate:
        return click.option(spec.negate, f.name, is_flag=True, flag_value=not default,
                            default=default, help=spec.help)
    if spec.flag:
        kwargs.update(is_flag=True, default=bool(default))
    elif spec.flag_value is not None:
        kwargs.update(is_flag=False, flag_value=spec.flag_value, default=default, type=kind)
    elif spec.multiple:
        kwargs.update(multiple=True, type=kind)
    elif isinstance(default, bool) and kind is None:
        flags = (f"{flags[0]}/--no-{flags[0][2:]}", *flags[1:])
        kwargs.update(default=default, show_default=True)
    else:
        kwargs.update(default=default, type=kind)
        if spec.default_text is not None and not (overridden and default is not None):
            kwargs["help"] = f"{spec.help} [default: {spec.default_text}]"
        elif default is not None:
            kwargs["show_default"] = True
    return click.option(*flags, f.name, **kwargs)


def click_options(cls: type, *, only: Iterable[str] | None = None, skip: Iterable[str] = (),
                  defaults: Mapping[str, Any] | None = None) -> Callable[[F], F]:
    """A decorator adding one click option per described field of ``cls`` (``defaults``
    overrides a field's default for this command only)."""
    fields = cli_fields(cls, only, skip)
    defaults = defaults or {}

    def wrap(fn: F) -> F:
        for f in reversed(fields):  # click lists options in decorator order, top first
            fn = _option(f, _default(f, defaults), f.name in defaults)(fn)
        return fn

    return wrap


def take(cls: type[T], values: dict[str, Any], **fixed: Any) -> T:
    """Build ``cls`` from the options of its fields found in ``values`` (removed from it, so
    that what is left belongs to the command), plus ``fixed``."""
    names = {f.name for f in dataclasses.fields(cls)}
    mine = {k: values.pop(k) for k in list(values) if k in names}
    return cls(**{**mine, **fixed})
