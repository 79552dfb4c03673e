"""A command's options made from its settings, so that a new setting is one line in one place.

The settings are a dataclass (`TrainConfig`) or a pydantic-settings model (`ServerSettings`). Each
field becomes an option `--name-with-dashes` (a `--name/--no-name` flag where it is a bool). Only the
options given on the command line are passed on, so a setting left out is decided by the settings
themselves: the dataclass, a recipe or a settings file; for a settings model, its ACTIONREC_*
variable, then its default. --help shows a dataclass field's default as Click does, and a settings
model field's default and variable after its help. What a field says about its option is in the
dataclass field's `metadata` (for a settings model: `description` is the help, the rest is in
`json_schema_extra`):

    help           the option's help
    choices        the values Click accepts (and --help lists)
    flags          Click's declarations where the generated ones will not do, e.g. ("--out", "-o")
    path           the value is a path (a `Path` on the command line, a `str` in the settings)
    argument       a positional argument instead of an option
    shown_default  what --help shows as the default where the field's is None (the recipe decides)
    cli            False: not on the command line
    type           what the command line parses where it is not the field's type (text for a list)
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import types
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, Optional, Union, get_args, get_origin, get_type_hints

import typer
from rich.markup import escape  # Typer reads help as Rich markup, where [...] is a style


def config_options(settings: type, *, after: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorates `command(given, **own)`: Typer sees the fields of `settings` (a dataclass or a
    pydantic-settings model) as parameters, and `command`'s own parameters (the ones after `given`)
    right after the field named `after` (at the end without one). `given` holds the settings named on
    the command line, by field name, paths as str."""
    generated = [_parameter(field) for field in _fields(settings) if field.meta.get("cli", True)]
    names = {parameter.name for parameter in generated}

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        own = list(inspect.signature(command, eval_str=True).parameters.values())[1:]
        at = next(i + 1 for i, parameter in enumerate(generated) if parameter.name == after) if after else None
        parameters = generated[:at] + own + (generated[at:] if at is not None else [])

        @functools.wraps(command)
        def with_settings(typer_context: typer.Context, **values: Any) -> Any:
            given = {name: str(value) if isinstance(value, Path) else value for name, value in values.items()
                     if name in names and getattr(typer_context.get_parameter_source(name), "name", None) != "DEFAULT"}
            return command(given, **{parameter.name: values[parameter.name] for parameter in own})

        context = inspect.Parameter("typer_context", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                    annotation=typer.Context)
        with_settings.__signature__ = inspect.Signature([context, *parameters])  # type: ignore[attr-defined]
        with_settings.__annotations__ = {parameter.name: parameter.annotation for parameter in [context, *parameters]}
        return with_settings

    return decorate


@dataclasses.dataclass(frozen=True)
class _Field:
    """A setting as the command line sees it, whichever kind of settings it comes from."""

    name: str
    hint: Any
    default: Any
    meta: Mapping[str, Any]


def _fields(settings: type) -> list[_Field]:
    if dataclasses.is_dataclass(settings):
        hints = get_type_hints(settings)
        return [_Field(field.name, hints[field.name], None if field.default is dataclasses.MISSING else field.default,
                       field.metadata) for field in dataclasses.fields(settings)]
    model: Any = settings  # a pydantic-settings model
    prefix = model.model_config.get("env_prefix", "")
    return [_model_field(name, info, prefix) for name, info in model.model_fields.items()]


def _model_field(name: str, info: Any, prefix: str) -> _Field:
    """A settings model's field. Its option has no default: a flag left out leaves the choice to the
    variable, then the field's default, which --help names after the help."""
    default = info.get_default(call_default_factory=True)
    shown = "none" if default in (None, []) else default
    description = info.description or ""
    text = description[:1].upper() + description[1:] + escape(f" [default: {shown}; env {prefix}{name.upper()}]")
    return _Field(name, info.annotation, None, {**(info.json_schema_extra or {}), "help": text, "shown_default": False})


def _parameter(field: _Field) -> inspect.Parameter:
    meta, default = field.meta, field.default
    kind = _value_type(field.hint, meta)
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
    if meta.get("type"):
        return meta["type"]
    if meta.get("choices"):
        return Literal[tuple(meta["choices"])]
    if meta.get("path"):
        return Path
    if get_origin(hint) in (Union, types.UnionType):
        return next(arg for arg in get_args(hint) if arg is not type(None))
    return hint


def _dashed(name: str) -> str:
    return name.replace("_", "-")
