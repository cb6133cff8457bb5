"""Categories as a person means them: trimmed text, case slips merged, rare ones pooled, gaps a category.

Rules (each stated in the prepared data's decisions), applied to the training rows of a text column:

- **whitespace**: leading and trailing blanks are removed and inner runs become one space (``" male "`` is
  ``"male"``); an empty or blank cell is a gap.
- **case**: spellings that differ only in letter case are one category, named by the most frequent spelling,
  when that spelling holds at least :data:`CASE_SHARE` of the group's rows (``"male"`` x 40 and ``"Male"`` x 3);
  groups with two common spellings (``"A"`` x 20 and ``"a"`` x 20) are kept apart, as deliberate codes.
- **gaps**: a gap is the category :data:`MISSING`.
- **rare**: categories (gaps included) with fewer than ``min_frequency`` training rows are pooled into
  :data:`INFREQUENT`; a category never seen in training joins that pool later (all zeros when training had none).

Strict mode applies none of these: values are compared exactly, and gaps or unseen values are refused.

Example:
    >>> import numpy as np
    >>> t = normalise(np.array(["male"] * 6 + [" Male "] + ["female"] * 5 + [None, "other"], dtype=object))
    >>> fit_categories(t, min_frequency=2, strict=False)
    Categories(categories=['female', 'male', '(infrequent)'], aliases={'Male': 'male'}, pooled=['(missing)', 'other'], gaps=1)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["CASE_SHARE", "INFREQUENT", "MISSING", "Categories", "fit_categories", "normalise", "text_of"]

MISSING = "(missing)"
INFREQUENT = "(infrequent)"
CASE_SHARE = 2 / 3


def text_of(series: pd.Series) -> np.ndarray:
    """The column as an object array of ``str`` with ``None`` where missing; whole floats print as integers
    (an integer code column with a gap is float: ``3.0`` is the code ``"3"``)."""
    import pandas as pd

    present = series.notna().to_numpy()
    out = np.full(len(series), None, dtype=object)
    values = series[present]
    if pd.api.types.is_float_dtype(values.dtype) and bool((values == values.round()).all()):
        values = values.astype("int64")
    out[present] = values.astype("str").to_numpy(dtype=object)
    return out


def normalise(t: np.ndarray) -> np.ndarray:
    """Trim and collapse whitespace; a blank cell becomes ``None`` (a gap)."""
    out = np.array([" ".join(v.split()) if v is not None else None for v in t], dtype=object)
    out[out == ""] = None
    return out


@dataclass
class Categories:
    """What one text column learned: its categories, its case aliases, and what was pooled."""

    categories: list[str]
    aliases: dict[str, str]  # a merged spelling -> its category
    pooled: list[str]  # categories pooled into INFREQUENT
    gaps: int  # training gaps


def fit_categories(t: np.ndarray, min_frequency: int, *, strict: bool) -> Categories:
    """Learn a normalised column's categories from its training values ``t`` (``None`` for a gap)."""
    missing = t == None  # noqa: E711 (elementwise on an object array)
    spellings, counts = np.unique(t[~missing].astype(str), return_counts=True)
    aliases: dict[str, str] = {}
    if not strict:
        aliases = _case_aliases(spellings.tolist(), counts.tolist())
    count: dict[str, int] = {}
    for s, k in zip(spellings.tolist(), counts.tolist()):
        name = aliases.get(s, s)
        count[name] = count.get(name, 0) + int(k)
    gaps = int(missing.sum())
    if gaps and not strict:
        count[MISSING] = gaps
    if strict:
        return Categories(sorted(count), aliases, [], gaps)
    kept = sorted(c for c, k in count.items() if k >= min_frequency)
    pooled = sorted(c for c, k in count.items() if k < min_frequency)
    return Categories(kept + ([INFREQUENT] if pooled else []), aliases, pooled, gaps)


def _case_aliases(spellings: list[str], counts: list[int]) -> dict[str, str]:
    groups: dict[str, list[tuple[int, str]]] = {}
    for s, k in zip(spellings, counts):
        groups.setdefault(s.casefold(), []).append((k, s))
    aliases: dict[str, str] = {}
    for group in groups.values():
        if len(group) < 2:
            continue
        top_count, top = max(group, key=lambda ks: (ks[0], ks[1]))
        if top_count >= CASE_SHARE * sum(k for k, _ in group):
            aliases.update({s: top for _, s in group if s != top})
    return aliases
