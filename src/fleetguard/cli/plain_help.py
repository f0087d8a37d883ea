"""How every command's ``--help`` reads: plain, in the Unix way, and instant.

typer (0.2x) prints each parameter's Python type (``--json <bool>``, ``--label
<list[str]>``, ``{device_id}``). Here a parameter without a metavar of its own gets one:
a flag none, a value its kind (``TEXT``, ``INTEGER``, ``FLOAT``, ``PATH``), an argument its
name (``DEVICE_ID``, ``TARGETS...``); a choice is named (``--state STATE``) and its values
are listed once, in its help, from the enum itself, so the two never drift apart.

``use_plain_help(app)`` gives every group and command of a typer app these classes.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, get_args

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup

_KIND_METAVARS = {str: "TEXT", int: "INTEGER", float: "FLOAT"}


class _PlainArgument(TyperArgument):
    """An argument whose metavar says it all: no type column beside it."""

    def display_type_rich(self, ctx: Any) -> str | None:
        return None


def _choice_values(param: Any) -> list[str]:
    choices = param.type_descriptor.choices or ()
    return [str(c.value) if isinstance(c, Enum) else str(c) for c in choices]


def _option_word(param: Any) -> str:
    """``--fail-on`` -> ``FAIL_ON``: what a choice is called on the command line."""
    longest: str = max(param.opts, key=len)
    return longest.lstrip("-").replace("-", "_").upper()


def _value_metavar(param: Any) -> str:
    descriptor = param.type_descriptor
    if descriptor.is_choice:
        return _option_word(param)
    if descriptor.is_path:
        return "PATH"
    annotation = descriptor.annotation
    if descriptor.is_list:
        (annotation,) = get_args(annotation)
    return _KIND_METAVARS.get(annotation, str(param.name).upper())


def _list_choices(param: Any) -> None:
    listed = f"One of: {', '.join(_choice_values(param))}."
    if not param.help:
        param.help = listed
    elif listed not in param.help:
        param.help = f"{param.help} {listed}"


def plain_param(param: Any) -> None:
    """Give ``param`` a plain metavar (one set in the source is kept) and list its choices."""
    if getattr(param, "type_descriptor", None) is None:
        return  # a typer that prints click's own plain names
    if param.type_descriptor.is_choice:
        _list_choices(param)
    if param.metavar is not None:
        return
    if isinstance(param, TyperArgument):
        param.metavar = str(param.name).upper() + ("..." if param.nargs != 1 else "")
        param.__class__ = _PlainArgument  # same object, its type column left out
    elif getattr(param, "is_flag", False):
        param.metavar = ""
    else:
        param.metavar = _value_metavar(param)


def _plain_params(params: list[Any]) -> list[Any]:
    for param in params:
        plain_param(param)
    return params


def _argument_usage(params: list[Any]) -> list[str]:
    pieces = []
    for param in params:
        if param.param_type_name == "argument":
            pieces.append(param.metavar if param.required else f"[{param.metavar}]")
    return pieces


class PlainHelpCommand(TyperCommand):
    """A command whose help and usage line name values plainly."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _plain_params(super().get_params(ctx))

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        options = [self.options_metavar] if self.options_metavar else []
        return [*options, *_argument_usage(self.get_params(ctx))]


class QuickHelpGroup(TyperGroup):
    """A group with plain help whose own ``--help``, when not given (``fleetguard device
    list --help`` passes through ``fleetguard`` and ``device``), is not run through typer's
    pydantic-based coercion: that alone would load pydantic and cost ~0.1 s per help.
    A given ``--help`` is a bool and typer skips coercing it anyway."""

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)
        if option is not None and getattr(option, "_runtime_param", False) is None:
            try:
                from typer._coercion import PassThroughRuntimeParam

                option._runtime_param = PassThroughRuntimeParam(
                    parameter_info=option.type_descriptor.parameter_info, annotation=bool
                )
            except (ImportError, AttributeError, TypeError):  # another typer: its own way
                pass
        return option

    def get_params(self, ctx: Any) -> list[Any]:
        return _plain_params(super().get_params(ctx))

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        options = [self.options_metavar] if self.options_metavar else []
        return [*options, *_argument_usage(self.get_params(ctx)), self.subcommand_metavar]


def use_plain_help(app: typer.Typer) -> None:
    """Every command and group of ``app``, however deep, prints plain help."""
    app.info.cls = QuickHelpGroup
    for command in app.registered_commands:
        if command.cls in (None, TyperCommand):  # typer's default; a chosen class stays
            command.cls = PlainHelpCommand
    for group in app.registered_groups:
        group.cls = QuickHelpGroup
        if group.typer_instance is not None:
            use_plain_help(group.typer_instance)
