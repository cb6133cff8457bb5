"""The preprocessor: what was learned from the training rows, applied the same way to any later table.

The column rules (what is numeric, boolean, a date, categorical, an identifier) are in :mod:`descend.data.kinds`;
the maths of each feature (fill, scale, one-hot) in :mod:`descend.data.fitting`; categories (whitespace, case, rare
and unseen values, gaps) in :mod:`descend.data.categories`. Each decision is a line of :meth:`Preprocessor.describe`,
saved with the rest.

At prediction time (:meth:`Preprocessor.transform`) columns may come in any order, extra columns are ignored (named
once in a :class:`DataWarning`), missing ones are refused by name; gaps and unseen categories are handled as in
training and counted in a warning. ``strict=True`` refuses each of these instead.

Everything learned is plain numbers and strings: :meth:`Preprocessor.to_dict` is JSON, saved beside the model.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from descend.data.columns import column_kind
from descend.data.decisions import describe_columns, describe_notes
from descend.data.encode import Notes, encode_splits
from descend.data.errors import ColumnMismatchError, ConstantColumnError, DataOptionError, DataWarning, shown
from descend.data.fitting import Column, Fitting, fit_column
from descend.data.kinds import Plan, blanks_as_gaps, plan_columns
from descend.data.options import UNSEEN, check_choice, check_count, check_names, impute_choice
from descend.data.read import Origin, read_with_origin, shown_names
from descend.data.target import TargetEncoding

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["CONSTANT", "SCALES", "Column", "Preprocessor"]

SCALES = ("standard", "minmax", "none")
CONSTANT = ("drop", "error")


class Preprocessor:
    """Turns feature columns into a float32 tensor with statistics learned from training rows only.

    Args:
        scale: ``"standard"``, ``"minmax"`` or ``"none"`` (see :mod:`descend.data.fitting` for the maths).
        impute, unseen, min_frequency, drop, keep, dates, categorical, strict: as :func:`descend.data.prepare`.
        constant: ``"drop"`` (with a warning) or ``"error"`` for columns constant over the training rows.

    Learned attributes end in ``_``: ``columns_`` (one :class:`Column` per input column), ``feature_names_``,
    ``target_`` (a :class:`TargetEncoding`, or None when fitted without a target), ``decisions_`` (the lines of
    :meth:`describe`).

    Example:
        >>> import pandas as pd
        >>> pre = Preprocessor().fit(pd.DataFrame({"a": [1.0, 3.0], "y": [0, 1]}), target="y")
        >>> pre.transform(pd.DataFrame({"a": [2.0]})).tolist()
        [[0.0]]
    """

    def __init__(
        self,
        *,
        scale: str = "standard",
        impute: str | None = "median",
        unseen: str = "infrequent",
        constant: str = "drop",
        min_frequency: int = 5,
        strict: bool = False,
        drop: Sequence[str] | None = None,
        keep: Sequence[str] | None = None,
        dates: Sequence[str] | None = None,
        categorical: Sequence[str] | None = None,
    ) -> None:
        check_choice("scale", scale, SCALES)
        self.impute = impute_choice(impute)
        check_choice("unseen", unseen, UNSEEN)
        check_choice("constant", constant, CONSTANT)
        self.min_frequency = check_count("min_frequency", min_frequency)
        if not isinstance(strict, bool):
            raise DataOptionError(f"strict must be True or False; got {strict!r}")
        self.scale, self.unseen, self.constant, self.strict = scale, unseen, constant, strict
        self.drop, self.keep = check_names("drop", drop), check_names("keep", keep)
        self.dates, self.categorical = check_names("dates", dates), check_names("categorical", categorical)
        both = [n for n in self.drop if n in self.keep]
        if both:
            raise DataOptionError(f"drop and keep both name {shown(both[0])}; name a column in one of them")
        self.columns_: list[Column] = []
        self.target_: TargetEncoding | None = None
        self.decisions_: list[str] = []

    @property
    def unseen_rule(self) -> str:
        """What an unseen category becomes: strict mode refuses it whatever ``unseen`` says."""
        return "error" if self.strict else self.unseen

    # --- fitting ------------------------------------------------------------------------------------------------

    def fit(
        self, source: Any, *, target: str | Sequence[str] | None = None, task: str = "auto"
    ) -> Preprocessor:
        """Learn from every row of ``source`` (anything :func:`read_table` reads); the target is left out."""
        from descend.data.target import fit_target

        frame, origin = read_with_origin(source)
        names = [target] if isinstance(target, str) else list(target or [])
        features = [c for c in frame.columns if c not in names]
        frame = blanks_as_gaps(frame, features)
        plan = self.plan(frame, features, origin)
        self.fit_rows(frame, plan, np.arange(len(frame)), origin)
        self.target_ = fit_target(frame, names, task, origin) if names else None
        return self

    def plan(self, frame: pd.DataFrame, features: list[str], origin: Origin) -> Plan:
        """The kind of each feature column (rules: :mod:`descend.data.kinds`); names in the options must exist."""
        for option in ("drop", "keep", "dates", "categorical"):
            absent = [n for n in getattr(self, option) if n not in features]
            if absent:
                raise DataOptionError(
                    f"{option} names {shown_names(absent)}, not a feature column of {origin}; feature columns are "
                    f"{shown_names(features)}"
                )
        return plan_columns(
            frame, features, origin, drop=self.drop, keep=self.keep, dates=self.dates,
            categorical=self.categorical, strict=self.strict,
        )  # fmt: skip

    def fit_rows(self, frame: pd.DataFrame, plan: Plan, rows: np.ndarray, origin: Origin) -> None:
        """Learn each planned column from the given rows of ``frame`` only (the training split)."""
        how = Fitting(self.scale, self.impute, self.min_frequency, self.constant, self.strict)
        columns = []
        for name in frame.columns:
            if name in plan.kinds:
                columns.append(fit_column(
                    frame[name], name, plan.kinds[name], rows, origin, how, keep=name in self.keep,
                    fmt=plan.formats.get(name),
                ))  # fmt: skip
            elif name in plan.left_out:
                columns.append(Column(name, "dropped", reason=plan.left_out[name][0]))
        self.set_columns(columns, origin, plan)

    def set_columns(self, columns: list[Column], origin: Origin, plan: Plan | None = None) -> None:
        """Keep the fitted ``columns``, warning of those left out; refuse a table with none left."""
        self.columns_ = columns
        self.decisions_ = describe_columns(columns, plan or Plan(), self)
        for why, what in (("identifier", "that look like identifiers"), ("constant", "constant over the training rows"),
                          ("empty", "with no values")):  # fmt: skip
            names = [c.name for c in columns if c.kind == "dropped" and c.reason == why]
            if names:
                hint = "keep=[...] to use them" if why != "empty" else "nothing to learn from them"
                if why == "constant":
                    hint = "constant='error' to refuse them, or keep=[...] to keep them"
                warnings.warn(
                    f"{origin}: left out {len(names)} column(s) {what}: {shown_names(names, 10)} ({hint})",
                    DataWarning,
                    stacklevel=4,
                )
        if not any(c.width for c in self.columns_):
            if all(c.reason == "constant" for c in self.columns_):
                raise ConstantColumnError(f"{origin}: every feature column is constant over the training rows")
            raise ConstantColumnError(
                f"{origin}: no feature column is left to learn from ({'; '.join(self.decisions_)})"
            )

    def describe(self) -> list[str]:
        """What was done to each kind of column, one line each (saved with the preprocessor)."""
        return list(self.decisions_)

    # --- applying -----------------------------------------------------------------------------------------------

    @property
    def feature_names_(self) -> list[str]:
        return [n for c in self.columns_ for n in c.feature_names]

    def transform(self, source: Any, *, unseen: str | None = None, encoding: str | None = None) -> torch.Tensor:
        """Features of every row of ``source`` as a float32 tensor of shape ``(rows, len(feature_names_))``.

        The table must hold the training feature columns, in any order; other columns are ignored (named once in a
        :class:`DataWarning`). An array or tensor without column names is matched by position. Gaps, values that
        are not numbers in a numeric column, and unseen categories are handled as in training and counted in a
        warning (strict: refused). ``unseen`` overrides the fitted choice for categories not seen in training;
        ``encoding`` is the text encoding of a CSV/TSV file (see :func:`read_table`).
        """
        frame, origin = read_with_origin(source, encoding=encoding)
        return self.transform_frame(frame, origin, unseen=unseen)

    def transform_frame(self, frame: pd.DataFrame, origin: Origin, *, unseen: str | None = None) -> torch.Tensor:
        """:meth:`transform` of a table already read, whose errors name ``origin`` (the file it came from)."""
        if not self.columns_:
            raise DataOptionError("this Preprocessor is not fitted; call fit() or load one with from_dict()")
        if unseen is not None:
            check_choice("unseen", unseen, UNSEEN)
        frame = self._match_columns(frame, origin)
        frame = blanks_as_gaps(frame, [c.name for c in self.columns_ if c.kind != "dropped"])
        for c in self.columns_:
            if c.kind in ("numeric", "categorical"):
                self._check_kind(frame[c.name], c, origin)
        notes: Notes = {}
        X = encode_splits(frame, self.columns_, origin, [None], unseen or self.unseen_rule, strict=self.strict,
                          notes=[notes])[0]  # fmt: skip
        lines = describe_notes(notes, self.columns_)
        if lines:
            warnings.warn(f"{origin}: {'; '.join(lines)}", DataWarning, stacklevel=3)
        return X

    def _check_kind(self, series: pd.Series, c: Column, origin: Origin) -> None:
        """Refuse a column whose values are of another kind than in training (text for numbers, or the reverse);
        outside strict mode a numeric column may hold a few values that are not numbers (read as gaps)."""
        import pandas as pd

        present = series.dropna()
        if len(present) == 0:
            return  # a column of gaps is filled
        numeric = pd.api.types.is_numeric_dtype(series.dtype)
        if c.kind == "categorical":
            words = [k for k in c.categories or [] if pd.isna(pd.to_numeric(k, errors="coerce"))]
            if self.strict and numeric and words:  # outside strict mode a number is one more unseen category
                raise ColumnMismatchError(
                    f"{origin}: column {shown(c.name)} was categorical in training but here holds numbers such as "
                    f"{shown(present.iloc[0])}; give it the same kind of values as in training"
                )
            return
        if numeric:
            return
        numbers = pd.to_numeric(present.astype("str"), errors="coerce").notna()
        if self.strict:
            if column_kind(series, c.name, origin) == "numeric":  # refuses a stray word, naming its row
                return
        elif numbers.sum() * 2 >= len(present):
            return
        raise ColumnMismatchError(
            f"{origin}: column {shown(c.name)} was numeric in training but here holds text such as "
            f"{shown(present.iloc[int(np.argmin(numbers.to_numpy()))])}; give it the same kind of values as in "
            "training"
        )

    def _match_columns(self, frame: pd.DataFrame, origin: Origin) -> pd.DataFrame:
        used = [c.name for c in self.columns_ if c.kind != "dropped"]
        allowed = {c.name for c in self.columns_} | set(self.target_.names if self.target_ else [])
        have = list(frame.columns)
        if origin.name in ("array", "tensor") and not set(used) <= set(have):
            every = [c.name for c in self.columns_]
            for names in (used, every):
                if len(have) == len(names):
                    return frame.set_axis(names, axis=1)
            raise ColumnMismatchError(
                f"{origin}: has {len(have)} columns; the model was trained on {len(used)} feature columns "
                f"({shown_names(used)}), matched by position for an array"
            )
        missing = [n for n in used if n not in have]
        if missing:
            raise ColumnMismatchError(
                f"{origin}: missing feature column(s) {shown_names(missing)}; the model was trained on {shown_names(used)}"
            )
        extra = [n for n in have if n not in allowed]
        if extra:
            warnings.warn(
                f"{origin}: ignored {len(extra)} column(s) the model was not trained on: {shown_names(extra)}",
                DataWarning,
                stacklevel=4,
            )
        return frame

    def encode(
        self, frame: pd.DataFrame, origin: Origin, rows: np.ndarray | None, unseen: str
    ) -> torch.Tensor:
        """The features of ``frame`` (only ``rows``, if given) as scaled float32; values are checked as they go."""
        return encode_splits(frame, self.columns_, origin, [rows], unseen, strict=self.strict)[0]

    def decode(self, indices: Any) -> np.ndarray:
        """Original class labels for class indices (see :meth:`TargetEncoding.decode`)."""
        if self.target_ is None:
            raise DataOptionError(
                "this Preprocessor was fitted without a target, so it has no classes to decode"
            )
        return self.target_.decode(indices)

    # --- saving -------------------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Everything needed to rebuild this preprocessor, as JSON-ready lists, strings and numbers."""
        from descend.data.saving import preprocessor_dict

        return preprocessor_dict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocessor:
        """Rebuild a preprocessor saved with :meth:`to_dict`, checking every field (the file may have been edited):
        a :class:`DataOptionError` names the first field that is missing or out of range."""
        from descend.data.saving import preprocessor_from_dict

        return preprocessor_from_dict(cls, d)

    def __repr__(self) -> str:
        return (
            f"Preprocessor(scale={self.scale!r}, impute={self.impute!r}, unseen={self.unseen!r}, "
            f"min_frequency={self.min_frequency}, strict={self.strict}; {len(self.feature_names_)} features)"
        )
