"""The command line's flags for fit's options, made from the one table (:mod:`descend.train.options`).

Each option with a spelling becomes a flag whose type parses a word with the table's own rule and refuses it
with the table's message; ``--help`` lists them under the table's groups. :func:`gather` takes the values of a
parsed command, the flags given overriding a config file (TOML, or a run's ``config.json``).

Example:
    >>> is_switch(OPTIONS["guard"]), is_switch(OPTIONS["lr"]), _metavar(OPTIONS["scale"])
    (True, False, '[standard|minmax|none]')
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import click
from click.core import ParameterSource

from descend.errors import ConfigError
from descend.train.accepts import BOOLEAN, NONE
from descend.train.options import GROUPS, OPTIONS, Option, from_mapping

__all__ = ["GroupedCommand", "gather", "read_config", "table_options"]

F = TypeVar("F", bound=Callable[..., Any])

#: options a config file does not carry from one run to another: where a run is written and how it is owned
NOT_CARRIED = ("run_dir", "resume", "overwrite", "callbacks", "progress")


class TableType(click.ParamType):
    """A word for one option, read and checked by the table."""

    def __init__(self, option: Option) -> None:
        self.option = option
        self.name = option.metavar or _metavar(option)

    def get_metavar(self, *args: Any, **kwargs: Any) -> str:
        return self.name  # names as they are typed, not upper-cased

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        if not isinstance(value, str) and self.option.accepts.ok(value):
            return value  # a default, or a value a config file typed
        try:
            return self.option.parse(value)
        except ConfigError as e:
            self.fail(str(e).split("invalid ", 1)[1], param, ctx)


def is_switch(option: Option) -> bool:
    """Whether the option's flag is a switch (``--x`` / ``--no-x``): a word can only say true, false or none."""
    return all(p in (BOOLEAN, NONE) for p in option.accepts.parts or (option.accepts,) if p.read is not None)


def _metavar(option: Option) -> str:
    """``[a|b|c]`` for names, ``N`` an int, ``X`` a number, ``TEXT``."""
    words = option.accepts.metavar
    return f"[{words}]" if "|" in words else words


def _flag(option: Option) -> click.Option:
    spelling = option.spelling
    assert spelling is not None
    common: dict[str, Any] = {"help": option.help}
    if is_switch(option):
        if option.default is False:
            made = click.Option([spelling, option.name], is_flag=True, default=False, **common)
        else:
            made = click.Option([f"{spelling}/--no-{spelling[2:]}", option.name], default=option.default,
                                show_default=option.default is not None, **common)  # fmt: skip
    elif option.name == "optimizer_options":
        made = click.Option([spelling, option.name], type=TableType(option), multiple=True, **common)
    else:
        shown = option.default is not None and option.default != ()
        made = click.Option([spelling, option.name], type=TableType(option), default=option.default,
                            show_default=shown, **common)  # fmt: skip
    made.group = option.group  # type: ignore[attr-defined]
    return made


def table_options(names: Iterable[str]) -> Callable[[F], F]:
    """Add the flags of ``names`` (options of the table) to a command."""

    def add(f: F) -> F:
        for name in reversed(list(names)):
            click.decorators._param_memo(f, _flag(OPTIONS[name]))
        return f

    return add


class GroupedCommand(click.Command):
    """A command whose ``--help`` lists the table's flags under their groups, then the others."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        sections: dict[str, list[tuple[str, str]]] = {g: [] for g in (*GROUPS, "other")}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx) if isinstance(param, click.Option) else None
            if record is not None:
                sections[getattr(param, "group", "other")].append(record)
        for group, rows in sections.items():
            if rows:
                with formatter.section(f"{group.capitalize()} options"):
                    formatter.write_dl(rows)


def read_config(path: Path) -> dict[str, Any]:
    """A config file's options: TOML (read with the standard library), or a run folder's ``config.json`` (its
    ``arguments``; where the run was written is left out, so it can be repeated elsewhere)."""
    try:
        text = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"config: cannot read {str(path)!r}: {e.strerror or e}") from None
    try:
        if path.suffix.lower() == ".json":
            raw = json.loads(text)
            raw = raw.get("arguments", raw) if isinstance(raw, dict) else raw
        else:
            import tomllib

            raw = tomllib.loads(text.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError and TOMLDecodeError are ValueErrors
        raise ConfigError(f"config: {str(path)!r} is not valid {'JSON' if path.suffix == '.json' else 'TOML'}: "
                          f"{e}") from None  # fmt: skip
    if not isinstance(raw, dict):
        raise ConfigError(f"config: {str(path)!r} holds {type(raw).__name__}; expected a table of options")
    carried = NOT_CARRIED if path.suffix.lower() == ".json" else ("callbacks", "progress")
    if path.suffix.lower() == ".json" and not (isinstance(raw.get("data"), str) and raw["data"][:1] != "<"):
        raw.pop("data", None)  # data that was not a file (<DataFrame>, <Dataset>) cannot be read back
    return from_mapping(raw, where=str(path), skip=carried)


def gather(ctx: click.Context, names: Iterable[str], config: dict[str, Any]) -> dict[str, Any]:
    """The values of the options ``names``: a flag given on the command line, else the config's, else the
    default."""
    values: dict[str, Any] = {}
    for name in names:
        given = ctx.params.get(name)
        source = ctx.get_parameter_source(name)
        if name in config and source in (ParameterSource.DEFAULT, None):
            given = config[name]
        if name == "optimizer_options" and isinstance(given, tuple):  # repeated KEY=VALUE words
            given = {k: v for part in given for k, v in part.items()} or None
        values[name] = given
    return values
