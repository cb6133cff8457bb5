"""Lists on the command line (optimizers, learning rates, batch sizes to compare): each item read by its own
type, the list refused with a usage error (exit code 2) that names the option, the value and what is accepted.
Single options of training come from the table (:mod:`descend.cli._options`)."""

from __future__ import annotations

from typing import Any

import click

__all__ = ["NameList", "NumberList"]


class NameList(click.ParamType):
    """Comma-separated names, each from ``choices``; no repeats."""

    name = "names"

    def __init__(self, choices: tuple[str, ...]) -> None:
        self.choices = choices

    def convert(self, value: Any, param: Any, ctx: Any) -> list[str]:
        if isinstance(value, list):
            return value
        names = [v.strip().lower() for v in str(value).split(",") if v.strip()]
        if not names:
            self.fail(f"expected one or more of {', '.join(self.choices)}, separated by commas", param, ctx)
        for n in names:
            if n not in self.choices:
                self.fail(f"unknown name {n!r}; expected some of {', '.join(self.choices)}", param, ctx)
        if len(set(names)) != len(names):
            self.fail(f"{value!r} repeats a name; expected each at most once", param, ctx)
        return names


class NumberList(click.ParamType):
    """Comma-separated positive numbers (learning rates) or batch sizes."""

    name = "list"

    def __init__(self, item: click.ParamType) -> None:
        self.item = item

    def convert(self, value: Any, param: Any, ctx: Any) -> list[Any]:
        if isinstance(value, list):
            return value
        items = [v.strip() for v in str(value).split(",") if v.strip()]
        if not items:
            self.fail("expected one or more values separated by commas", param, ctx)
        return [self.item.convert(v, param, ctx) for v in items]
