"""A command's options made from a settings dataclass, so that a new setting is one line in one place.

Each field becomes an option `--name-with-dashes` (a `--name/--no-name` flag where it is a bool) whose
default, shown in --help, is the field's. Only the options given on the command line are passed on,
so a setting left out is decided by the dataclass, a recipe or a settings file. The field's
`metadata` says the rest:

    help           the option's help
    choices        the values Click accepts (and --help lists)
    flags          Click's declarations where the generated ones will not do, e.g. ("--out", "-o")
    path           the value is a path (a `Path` on the command line, a `str` in the settings)
    argument       a positional argument instead of an option
    shown_default  what --help shows as the default where the field's is None (the recipe decides)
    cli            False: not on the command line
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, Optional, Union, get_args, get_origin, get_type_hints

import typer


def config_options(settings: type, *, after: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorates `command(given, **own)`: Typer sees the fields of the dataclass `settings` as
    parameters, and `command`'s own parameters (the ones after `given`) right after the field named
    `after` (at the end without one). `given` holds the settings named on the command line, by field
    name, paths as str."""
    generated = [_parameter(field, get_type_hints(settings)) for field in dataclasses.fields(settings)
                 if field.metadata.get("cli", True)]
    names = {parameter.name for parameter in generated}

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        own = list(inspect.signature(command, eval_str=True).parameters.values())[1:]
        at = next(i + 1 for i, parameter in enumerate(generated) if parameter.name == after) if after else None
        parameters = generated[:at] + own + (generated[at:] if at is not None else [])

        @functools.wraps(command)
        def with_settings(typer_context: typer.Context, **values: Any) -> Any:
            given = {name: str(value) if isinstance(value, Path) else value for name, value in values.items()
                     if name in names and typer_context.get_parameter_source(name).name != "DEFAULT"}
            return command(given, **{parameter.name: values[parameter.name] for parameter in own})

        context = inspect.Parameter("typer_context", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                    annotation=typer.Context)
        with_settings.__signature__ = inspect.Signature([context, *parameters])  # type: ignore[attr-defined]
        with_settings.__annotations__ = {parameter.name: parameter.annotation for parameter in [context, *parameters]}
        return with_settings

    return decorate


def _parameter(field: dataclasses.Field, hints: dict[str, Any]) -> inspect.Parameter:
    meta = field.metadata
    kind = _value_type(hints[field.name], meta)
    default = None if field.default is dataclasses.MISSING else field.default
    shown = meta.get("shown_default", default is not None)
    if meta.get("argument"):
        info = typer.Argument(default, help=meta.get("help"), show_default=shown)
    else:
        flags = meta.get("flags") or ((f"--{_dashed(field.name)}/--no-{_dashed(field.name)}",) if kind is bool else ())
        info = typer.Option(default, *flags, help=meta.get("help"), show_default=shown)
    return inspect.Parameter(field.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=info,
                             annotation=Optional[kind])  # noqa: UP045 - a type Typer reads, not an annotation


def _value_type(hint: Any, meta: Any) -> Any:
    """What the command line parses: the choices, a Path, or the field's type without its None."""
    if meta.get("choices"):
        return Literal[tuple(meta["choices"])]
    if meta.get("path"):
        return Path
    if get_origin(hint) in (Union, types.UnionType):
        return next(arg for arg in get_args(hint) if arg is not type(None))
    return hint


def _dashed(name: str) -> str:
    return name.replace("_", "-")
