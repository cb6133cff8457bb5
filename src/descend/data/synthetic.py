"""Seeded synthetic problems with known answers, as :class:`Dataset` records (features ``x0..``, target ``y``).

- :func:`make_linear`: :math:`y = X w + b + \\sigma \\varepsilon`, :math:`X, w, \\varepsilon \\sim N(0, 1)`,
  so least squares recovers ``info["weights"]`` and the best mean squared error is about :math:`\\sigma^2`.
- :func:`make_logistic`: :math:`y \\sim \\text{Bernoulli}(\\sigma(X w + b))`, labels 0/1.
- :func:`make_spirals`: ``arms`` interleaved spirals, one class each; not linearly separable.
- :func:`make_blobs`: Gaussian clusters around centres drawn uniformly in :math:`[-5, 5]^d`, one class each.

The same seed gives the same table; nothing touches global random state.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from descend.data.datasets import Dataset
from descend.data.errors import DataOptionError

__all__ = ["make_blobs", "make_linear", "make_logistic", "make_spirals"]


def _count(name: str, value: Any, least: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
        raise DataOptionError(f"{name} must be an integer >= {least}; got {value!r}")
    return int(value)


def _nonnegative(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise DataOptionError(f"{name} must be a number >= 0; got {value!r}")
    return float(value)


def _dataset(name: str, X: np.ndarray, y: np.ndarray, task: str, description: str, **info: Any) -> Dataset:
    import pandas as pd

    frame = pd.DataFrame(X.astype(np.float32), columns=[f"x{j}" for j in range(X.shape[1])])
    frame["y"] = y
    return Dataset(name, frame, "y", task, description, info)


def make_linear(n: int = 200, n_features: int = 5, *, noise: float = 0.1, seed: int = 0) -> Dataset:
    """Linear regression with Gaussian noise of standard deviation ``noise``.

    Example:
        >>> make_linear(100, 3, seed=1).frame.shape
        (100, 4)
    """
    n, d, noise = _count("n", n), _count("n_features", n_features), _nonnegative("noise", noise)
    rng = np.random.default_rng(seed)
    w, b = rng.standard_normal(d), float(rng.standard_normal())
    X = rng.standard_normal((n, d))
    y = X @ w + b + noise * rng.standard_normal(n)
    return _dataset(
        "linear", X, y.astype(np.float32), "regression", f"y = Xw + b + {noise} * N(0, 1)",
        weights=w.tolist(), bias=b, noise=noise,
    )  # fmt: skip


def make_logistic(n: int = 200, n_features: int = 2, *, seed: int = 0) -> Dataset:
    """Binary labels drawn from a logistic model; ``info`` holds its weights and bias."""
    n, d = _count("n", n), _count("n_features", n_features)
    rng = np.random.default_rng(seed)
    w, b = 2.0 * rng.standard_normal(d), float(rng.standard_normal())
    X = rng.standard_normal((n, d))
    p = 1.0 / (1.0 + np.exp(-(X @ w + b)))
    y = (rng.random(n) < p).astype(np.int64)
    return _dataset("logistic", X, y, "binary", "y ~ Bernoulli(sigmoid(Xw + b))", weights=w.tolist(), bias=b)


def make_spirals(
    n: int = 300, arms: int = 2, *, noise: float = 0.05, turns: float = 1.5, seed: int = 0
) -> Dataset:
    """Points on ``arms`` spirals (radius 0 to 1, ``turns`` revolutions), label = arm, plus Gaussian noise."""
    n, arms, noise = _count("n", n), _count("arms", arms, least=2), _nonnegative("noise", noise)
    turns = _nonnegative("turns", turns)
    rng = np.random.default_rng(seed)
    y = np.arange(n) % arms
    t = rng.random(n)
    theta = 2 * np.pi * (turns * t + y / arms)
    X = np.stack([t * np.cos(theta), t * np.sin(theta)], axis=1) + noise * rng.standard_normal((n, 2))
    task = "binary" if arms == 2 else "multiclass"
    return _dataset("spirals", X, y.astype(np.int64), task, f"{arms} interleaved spirals, {turns} turns")


def make_blobs(
    n: int = 300, centers: int = 3, n_features: int = 2, *, spread: float = 1.0, seed: int = 0
) -> Dataset:
    """Gaussian clusters of standard deviation ``spread``; ``info["centers"]`` holds the centres."""
    n, k, d = _count("n", n), _count("centers", centers, least=2), _count("n_features", n_features)
    spread = _nonnegative("spread", spread)
    rng = np.random.default_rng(seed)
    mu = rng.uniform(-5.0, 5.0, size=(k, d))
    y = np.arange(n) % k
    X = mu[y] + spread * rng.standard_normal((n, d))
    task = "binary" if k == 2 else "multiclass"
    return _dataset("blobs", X, y.astype(np.int64), task, f"{k} Gaussian blobs", centers=mu.tolist())
