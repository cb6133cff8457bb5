"""The decisions a preprocessor made, one plain line per kind of column, and what encoding met later.

These lines are :meth:`descend.data.Preprocessor.describe` (and :attr:`descend.data.PreparedData.decisions`): the
command line prints them, and they are saved with the preprocessing, so a model folder says what was done.

Example:
    >>> from descend.data.fitting import Column
    >>> describe_notes({"colour": {"unseen": 2, "example": "teal", "to": "(infrequent)"}}, [Column("colour", "categorical")])
    ["column 'colour': 2 rare or unseen value(s) (e.g. 'teal') encoded as '(infrequent)'"]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from descend.data.categories import INFREQUENT, MISSING
from descend.data.errors import shown

if TYPE_CHECKING:
    from descend.data.encode import Notes
    from descend.data.fitting import Column
    from descend.data.kinds import Plan
    from descend.data.preprocess import Preprocessor

__all__ = ["describe_columns", "describe_notes"]

_SCALED = {"standard": "scaled to mean 0, standard deviation 1", "minmax": "scaled to [0, 1]", "none": "not scaled"}


def _names(columns: Sequence[Column], detail: Any = None) -> str:
    shown_ = [c.name + (f" ({detail(c)})" if detail else "") for c in columns]
    return ", ".join(shown_[:8]) + (f" and {len(shown_) - 8} more" if len(shown_) > 8 else "")


def describe_columns(columns: Sequence[Column], plan: Plan, pre: Preprocessor) -> list[str]:
    """One line per kind of column: what it was taken to be and what was done to it."""
    lines: list[str] = []
    fill = "median" if pre.impute in ("median", "drop") else pre.impute
    by = {k: [c for c in columns if c.kind == k] for k in ("numeric", "boolean", "date", "categorical", "dropped")}
    if by["numeric"]:
        line = f"numeric: {_names(by['numeric'])}: {_SCALED[pre.scale]} (training rows)"
        gaps = [c for c in by["numeric"] if c.indicator]
        if gaps:
            line += (f"; gaps filled with the training {fill}, plus a 0/1 column <name>.missing: "
                     f"{_names(gaps, lambda c: f'{c.gaps} gaps')}")  # fmt: skip
        lines.append(line)
    if by["boolean"]:
        line = f"boolean: {_names(by['boolean'])}: 1 for true/yes/y/t, 0 for false/no/n/f"
        gaps = [c for c in by["boolean"] if c.indicator]
        if gaps:
            line += f"; gaps filled with the training {fill}, plus <name>.missing: {_names(gaps, lambda c: f'{c.gaps} gaps')}"
        lines.append(line)
    if by["date"]:
        def parts(c: Column) -> str:
            how = f"read as {c.format}" if c.format and c.format != "ISO8601" else "ISO 8601" if c.format else "dates"
            return f"{how}; {', '.join(c.parts or [])}" + (f"; {c.gaps} gaps" if c.gaps else "")

        lines.append(f"date: {_names(by['date'], parts)}: expanded into numeric parts (days = days since 1970-01-01), "
                     "each scaled like a number, no one-hot; gaps filled with the training median of each part")
    cats = by["categorical"]
    if cats:
        line = f"categorical: {_names(cats, lambda c: f'{len(c.categories or [])} columns')}: one 0/1 column per category"
        if not pre.strict:
            line += "; text trimmed of stray whitespace"
            merged = [c for c in cats if c.aliases]
            if merged:
                line += "; case slips merged into the usual spelling: " + "; ".join(
                    f"{c.name}: " + ", ".join(f"{shown(a)} -> {shown(b)}" for a, b in list((c.aliases or {}).items())[:4])
                    for c in merged[:4]
                )
            gaps = [c for c in cats if c.gaps]
            if gaps:
                line += f"; gaps are the category {MISSING!r}: {_names(gaps, lambda c: f'{c.gaps} gaps')}"
            pooled = [c for c in cats if c.pooled]
            if pooled:
                line += (f"; categories with fewer than {pre.min_frequency} training rows pooled into "
                         f"{INFREQUENT!r}: {_names(pooled, lambda c: f'{len(c.pooled or [])} pooled')}")  # fmt: skip
            to = {"infrequent": f"go to {INFREQUENT!r} (all zeros in a column without it)", "ignore": "are all zeros",
                  "error": "are refused"}[pre.unseen]  # fmt: skip
            line += f"; categories not seen in training {to}"
        lines.append(line)
    dropped = by["dropped"]
    for reason, what in (("identifier", "left out as identifiers (keep=[...] to use them)"),
                         ("constant", "dropped as constant over the training rows"),
                         ("empty", "left out, no values"), ("asked", "left out as asked (drop=)")):  # fmt: skip
        named = [c for c in dropped if c.reason == reason]
        if named:
            detail = (lambda c: plan.left_out[c.name][1]) if reason == "identifier" and plan.left_out else None
            lines.append(f"{what}: {_names(named, detail)}")
    if pre.strict:
        lines.append("strict: gaps, unseen categories, undeclared dates and identifiers are refused")
    return lines


def describe_notes(notes: Notes, columns: Sequence[Column]) -> list[str]:
    """What encoding met, per column: gaps filled, values not read, unseen categories and where they went."""
    lines = []
    kinds = {c.name: c.kind for c in columns}
    for name, note in notes.items():
        said = []
        if note.get("gaps"):
            said.append(f"{note['gaps']} gap(s) filled")
        if note.get("unread"):
            said.append(f"{note['unread']} value(s) that are not {kinds.get(name, 'numeric')} (e.g. "
                        f"{shown(note.get('example'))}) read as gaps")  # fmt: skip
        if note.get("unseen"):
            said.append(f"{note['unseen']} rare or unseen value(s) (e.g. {shown(note.get('example'))}) "
                        f"encoded as {note['to'] if note['to'] == 'all zeros' else repr(note['to'])}")  # fmt: skip
        if said:
            lines.append(f"column {shown(name)}: {', '.join(said)}")
    return lines

