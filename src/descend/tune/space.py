"""A search space over ``fit``'s options, checked against the one table of training options.

A space maps option names to Optuna distributions (or is a function of the trial that returns the options). On
the command line each parameter is one word ``NAME=KIND:SPEC``:

=========================== ==============================================================================
word                        distribution
=========================== ==============================================================================
``lr=log:1e-4:1e-1``        a number drawn log-uniformly in [1e-4, 1e-1]
``dropout=float:0:0.5``     a number drawn uniformly in [0, 0.5]
``epochs=int:5:20``         an integer in [5, 20]; ``logint:16:256`` log-uniformly
``optimizer=choice:sgd,adam`` one of the names (each read as the option reads a word: ``batch_size=choice:16,full``)
``model=choice:mlp:64|mlp:128,64`` choices holding commas are separated by ``|``
=========================== ==============================================================================

Every value a distribution can give must be one the option accepts (``low`` and ``high`` of a range, each
choice), so a wrong space is one :class:`~descend.errors.ConfigError` before any trial runs. Options of the data
and run groups (how the table is read, where runs go) are the study's, not a trial's, and are refused.

Example:
    >>> space = parse_words(["lr=log:1e-4:1e-1", "batch_size=choice:16,32,full"])
    >>> space["lr"]
    FloatDistribution(high=0.1, log=True, low=0.0001, step=None)
    >>> space["batch_size"].choices
    (16, 32, 'full')
    >>> parse_words(["lr=log:0:1"])
    Traceback (most recent call last):
    ...
    descend.errors.ConfigError: space: lr=log:0:1 has a log range through zero; expected 0 < low <= high
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from descend.errors import ConfigError
from descend.train.options import OPTIONS

__all__ = ["KINDS", "Space", "as_text", "check_space", "parse_word", "parse_words", "read_space_file", "sample"]

KINDS = ("float", "log", "int", "logint", "choice")
#: option groups a trial may not change: the data is read once for the whole study, and the study owns its runs
STUDY_GROUPS = ("data", "run")
Space = Mapping[str, BaseDistribution] | Callable[[Any], Mapping[str, Any]]


def _option(name: str, where: str) -> Any:
    option = OPTIONS.get(name)
    if option is None:
        near = ", ".join(n for n in OPTIONS if OPTIONS[n].group not in STUDY_GROUPS)
        raise ConfigError(f"space: {where} names an unknown parameter {name!r}; expected an option of fit: {near}")
    if option.group in STUDY_GROUPS or option.flag is None:
        raise ConfigError(f"space: {where}: {name} is an option of the whole study ({option.group} group), not of a "
                          "trial; give it once, outside the space")  # fmt: skip
    return option


def _number(text: str, where: str, integer: bool) -> float:
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        raise ConfigError(f"space: {where} has {text!r} where a{'n integer' if integer else ' number'} belongs; "
                          "expected NAME=KIND:LOW:HIGH") from None  # fmt: skip
    if not math.isfinite(value):
        raise ConfigError(f"space: {where} has {text!r}; expected a finite number")
    return value


def parse_word(word: str) -> tuple[str, BaseDistribution]:
    """One parameter from its word ``NAME=KIND:SPEC`` (see the module's table)."""
    name, eq, spec = word.partition("=")
    name = name.strip().replace("-", "_")
    kind, colon, rest = spec.partition(":")
    kind = kind.strip().lower()
    if not eq or not name or not colon or kind not in KINDS:
        raise ConfigError(f"space: cannot read {word!r}; expected NAME=KIND:SPEC with KIND one of {', '.join(KINDS)} "
                          "(e.g. lr=log:1e-4:1e-1, optimizer=choice:sgd,adam)")  # fmt: skip
    option = _option(name, word)
    if kind == "choice":
        words = [w.strip() for w in rest.split("|" if "|" in rest else ",")]
        if not [w for w in words if w]:
            raise ConfigError(f"space: {word} has an empty choice; expected one or more values after choice:")
        if any(not w for w in words):
            raise ConfigError(f"space: {word} has an empty value among its choices; expected values separated by "
                              f"{'|' if '|' in rest else ','}")  # fmt: skip
        try:
            values = [option.parse(w) for w in words]
        except ConfigError as e:
            raise ConfigError(f"space: {word}: {str(e).split(': ', 1)[1]}") from None
        return name, CategoricalDistribution(values)
    bounds = rest.split(":")
    if len(bounds) != 2:
        raise ConfigError(f"space: {word} needs two bounds; expected {name}={kind}:LOW:HIGH")
    integer = kind in ("int", "logint")
    low, high = (_number(b.strip(), word, integer) for b in bounds)
    log = kind in ("log", "logint")
    _bounds(word, low, high, log)
    if integer:
        return name, IntDistribution(int(low), int(high), log=log)
    return name, FloatDistribution(low, high, log=log)


def _bounds(where: str, low: float, high: float, log: bool) -> bool:
    if low > high:
        raise ConfigError(f"space: {where} has low > high ({low:g} > {high:g}); expected low <= high")
    if log and low <= 0:
        raise ConfigError(f"space: {where} has a log range through zero; expected 0 < low <= high")
    return True


def parse_words(words: Iterable[str]) -> dict[str, BaseDistribution]:
    """A space from ``--param`` words; a name given twice is refused."""
    space: dict[str, BaseDistribution] = {}
    for word in words:
        name, distribution = parse_word(word)
        if name in space:
            raise ConfigError(f"space: {name} is given twice; expected one --param per option")
        space[name] = distribution
    return check_space(space)


def read_space_file(path: Path) -> dict[str, BaseDistribution]:
    """A space from a TOML file: ``NAME = "KIND:SPEC"`` (the word after ``=``), or ``NAME = [choices]``."""
    import tomllib

    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"space: cannot read {str(path)!r}: {e.strerror or e}") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise ConfigError(f"space: {str(path)!r} is not valid TOML: {e}") from None
    words = []
    for key, value in raw.items():
        if isinstance(value, list):
            value = "choice:" + "|".join(str(v).lower() if isinstance(v, bool) else str(v) for v in value)
        if not isinstance(value, str):
            raise ConfigError(f"space: {str(path)!r}: {key} = {value!r}; expected \"KIND:SPEC\" or a list of choices")
        words.append(f"{key}={value}")
    return parse_words(words)


def check_space(space: Mapping[str, Any]) -> dict[str, BaseDistribution]:
    """``space`` with each name an option a trial may set and every value its distribution can give one the
    option accepts; the template error otherwise."""
    if not isinstance(space, Mapping) or not space:
        raise ConfigError(f"space: invalid space={space!r}; expected a non-empty dict of option names to Optuna "
                          "distributions, or a function of the trial")  # fmt: skip
    out: dict[str, BaseDistribution] = {}
    for name, distribution in space.items():
        option = _option(str(name), str(name))
        if isinstance(distribution, CategoricalDistribution):
            if not distribution.choices:
                raise ConfigError(f"space: {name} has an empty choice; expected one or more values")
            values: list[Any] = list(distribution.choices)
        elif isinstance(distribution, (FloatDistribution, IntDistribution)):
            _bounds(str(name), distribution.low, distribution.high, distribution.log)
            values = [distribution.low, distribution.high]
        else:
            raise ConfigError(f"space: invalid {name}={distribution!r}; expected an Optuna FloatDistribution, "
                              "IntDistribution or CategoricalDistribution")  # fmt: skip
        for value in values:
            if not option.accepts.ok(value):
                raise ConfigError(f"space: {name} can give {value!r}; expected {option.accepts.text}")
        if name == "model":
            _check_models(values)
        out[str(name)] = distribution
    return out


def _check_models(specs: list[Any]) -> None:
    from descend.models import from_spec

    for spec in specs:
        if isinstance(spec, str):
            from_spec(spec)  # its own ConfigError names the spec


def sample(trial: Any, space: Space) -> dict[str, Any]:
    """The options of one trial: each parameter drawn from its distribution (or the space function's)."""
    if callable(space) and not isinstance(space, Mapping):
        drawn = dict(space(trial))
        for name, value in drawn.items():
            _option(name, "the space function's options").check(value)
        return drawn
    drawn = {}
    for name, d in space.items():
        if isinstance(d, CategoricalDistribution):
            drawn[name] = trial.suggest_categorical(name, d.choices)
        elif isinstance(d, IntDistribution):
            drawn[name] = trial.suggest_int(name, d.low, d.high, step=d.step, log=d.log)
        else:
            assert isinstance(d, FloatDistribution)
            drawn[name] = trial.suggest_float(name, d.low, d.high, step=d.step, log=d.log)
    return drawn


def as_text(space: Space) -> dict[str, str]:
    """Each parameter as its word (for study.json and the report); a function as its name."""
    if callable(space) and not isinstance(space, Mapping):
        return {"function": f"{getattr(space, '__module__', '?')}.{getattr(space, '__qualname__', repr(space))}"}
    words: dict[str, str] = {}
    for name, d in space.items():
        if isinstance(d, CategoricalDistribution):
            sep = "|" if any("," in str(c) for c in d.choices) else ","
            words[name] = "choice:" + sep.join(str(c) for c in d.choices)
        elif isinstance(d, IntDistribution):
            words[name] = f"{'logint' if d.log else 'int'}:{d.low}:{d.high}"
        elif isinstance(d, FloatDistribution):
            words[name] = f"{'log' if d.log else 'float'}:{d.low:g}:{d.high:g}"
    return words
