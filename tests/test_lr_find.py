"""The learning-rate range test: it leaves every piece of state bit-identical, its suggestion sits below the
stability edge of a quadratic with a known Hessian, it says so when there is no descent, and lr="auto" in fit
trains exactly as the same fit given the chosen number."""

from __future__ import annotations

import copy
import json
import math
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import descend
from descend.data import Batches
from descend.errors import ConfigError
from descend.models import MLP
from descend.tune import adaptive, lr_find, suggest

pytestmark = pytest.mark.filterwarnings("ignore::descend.train.ConvergenceWarning")


def classification(n: int = 400, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 6, generator=g)
    return X, (X[:, 0] + X[:, 1] * X[:, 2] > 0).long() + (X[:, 3] > 0.5).long()


def everything(model: nn.Module, opt: torch.optim.Optimizer, batches: Batches) -> dict[str, Any]:
    return {
        "model": copy.deepcopy(model.state_dict()),
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "training": model.training,
        "optimizer": copy.deepcopy(opt.state_dict()),
        "groups": [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups],
        "rng": torch.get_rng_state(),
        "order": batches.state_dict(),
    }


def assert_identical(a: Any, b: Any, where: str = "") -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_identical(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_identical(x, y, f"{where}[{i}]")
    else:
        assert a == b or (a != a and b != b), (where, a, b)


@pytest.mark.parametrize("optimizer", ["descend-adam", "descend-momentum-schedule", "torch-sgd"])
def test_state_is_bit_identical_after_the_range_test(optimizer: str) -> None:
    # Parameters and buffers (batch-norm statistics), gradients, train/eval mode, optimizer state and param
    # groups (a schedule object included), the torch RNG and a data-order object: all exactly as before.
    X, y = classification()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 3))
    if optimizer == "descend-adam":
        opt: torch.optim.Optimizer = descend.optim.Adam(model.parameters(), lr=1e-3)
    elif optimizer == "descend-momentum-schedule":
        opt = descend.optim.Momentum(model.parameters(), lr=lambda t: 0.05 / (1 + t))
    else:
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    batches = Batches(len(X), 32, seed=4)
    for _, idx in zip(range(5), batches):  # some optimizer state, a data position, leftover gradients
        opt.zero_grad()
        nn.functional.cross_entropy(model(X[idx]), y[idx]).backward()
        opt.step()
    model.eval()
    before = everything(model, opt, batches)
    found = lr_find(model, opt, nn.functional.cross_entropy, X, y, steps=40, sweeps=2)
    assert found.steps > 20
    assert_identical(before, everything(model, opt, batches))
    if optimizer == "descend-momentum-schedule":
        assert callable(opt.param_groups[0]["lr_schedule"])


def test_auto_trains_exactly_like_the_chosen_number() -> None:
    # Oracle: fit with lr set to the number lr="auto" chose. Same seed → same init, data order and dropout masks;
    # if the range test had moved any state, the histories would differ.
    X, y = classification()
    data = SimpleNamespace(X_train=X[:320], y_train=y[:320], X_val=X[320:], y_val=y[320:], task="multiclass")
    options: dict[str, Any] = {"epochs": 6, "seed": 3, "progress": False, "optimizer": "momentum"}
    auto = descend.fit(MLP(hidden=(16,), dropout=0.2), data, lr="auto", **options)
    assert auto.lr_find is not None and not auto.lr_find.fallback
    fixed = descend.fit(MLP(hidden=(16,), dropout=0.2), data, lr=auto.lr_find.lr, **options)
    strip = [{k: v for k, v in row.items() if k != "time"} for row in auto.history]
    assert strip == [{k: v for k, v in row.items() if k != "time"} for row in fixed.history]
    for p, q in zip(auto.model.parameters(), fixed.model.parameters()):
        assert torch.equal(p, q)


def test_suggestion_sits_below_the_stability_edge_of_a_quadratic() -> None:
    # Least squares, full batch, plain gradient descent: the iteration diverges for lr > 2/λ_max, λ_max the top
    # eigenvalue of the Hessian (2/n) XᵀX of the mean squared error. Oracle: numpy's eigvalsh. The suggestion must be
    # a stable rate within 30x of the edge; each sweep's lowest loss must be at most 3x past the edge.
    g = torch.Generator().manual_seed(0)
    X = torch.randn(256, 5, generator=g, dtype=torch.float64) * torch.tensor([3.0, 1.0, 1.0, 0.5, 0.2], dtype=torch.float64)
    y = X @ torch.randn(5, generator=g, dtype=torch.float64) + 0.1 * torch.randn(256, generator=g, dtype=torch.float64)
    lam = float(np.linalg.eigvalsh(2 / 256 * X.numpy().T @ X.numpy()).max())
    edge = 2 / lam
    model = nn.Linear(5, 1, bias=False).double()
    nn.init.zeros_(model.weight)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    found = lr_find(model, opt, nn.functional.mse_loss, X, y.unsqueeze(1), batch_size=256, steps=100, sweeps=1)
    assert edge / 30 < found.lr < edge
    assert found.sweeps[0].lowest is not None and found.sweeps[0].lowest < 3 * edge


def test_no_descent_falls_back_and_says_so() -> None:
    # A loss that does not depend on the parameters' values in any useful way (pure noise around 1).
    X = torch.randn(200, 3)
    y = torch.randn(200, 1)
    model = nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.02)

    def loss_fn(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return 1 + 0.01 * target.mean() + 0 * out.sum()

    found = lr_find(model, opt, loss_fn, X, y, steps=40, sweeps=3)
    assert found.fallback and found.lr == 0.02 and found.spread == 1
    assert "no usable descent" in found.reason and "kept the fallback lr 0.02" in found.reason
    assert all(s.suggestion is None for s in found.sweeps)


def test_rule_on_a_constructed_curve() -> None:
    # A curve with a known shape on u = log10 lr: flat at 1 until u = -3, linear descent to 0.1 at u = -1,
    # blow-up after. Oracle by hand: lowest smoothed loss near u = -1 (±0.2 decades of smoothing), steepest slope
    # inside [-3, -1], and the suggestion is the lowest over the divisor.
    u = np.linspace(-6, 0.5, 120)
    loss = np.where(u < -3, 1.0, np.where(u < -1, 1.0 - 0.45 * (u + 3), 0.1 + 4 * (u + 1) ** 2))
    sweep = suggest(list(10**u), list(loss))
    assert sweep.lowest is not None and sweep.steepest is not None and sweep.suggestion is not None
    assert -1.2 < math.log10(sweep.lowest) < -0.8
    assert -3.0 <= math.log10(sweep.steepest) <= -1.0
    assert sweep.suggestion == pytest.approx(sweep.lowest / 5)
    assert suggest(list(10**u), list(loss), divisor=20).suggestion == pytest.approx(sweep.lowest / 20)


def test_run_folder_records_the_sweep(tmp_path: Path) -> None:
    X, y = classification()
    data = SimpleNamespace(X_train=X, y_train=y, X_val=None, y_val=None, task="multiclass")
    result = descend.fit("mlp", data, lr="auto", epochs=3, run_dir=tmp_path / "r", progress=False)
    found = result.lr_find
    rows = (tmp_path / "r" / "lr_find.csv").read_text().splitlines()
    assert rows[0] == "sweep,step,lr,loss,smoothed,slope" and len(rows) == 1 + found.steps
    events = [json.loads(line) for line in (tmp_path / "r" / "events.jsonl").read_text().splitlines()]
    event = next(e for e in events if e["event"] == "lr_find")
    assert event["lr"] == found.lr and event["reason"] == found.reason and "median of" in event["reason"]
    assert found.low <= found.lr <= found.high
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["resolved"]["lr"] == found.lr and config["arguments"]["lr"] == "auto"
    assert result.history[0]["lr"] == pytest.approx(found.lr)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lr_min": 0}, "lr_min=0; expected a number > 0"),
        ({"lr_max": 1e-7}, "lr_max=1e-07; expected a number > lr_min=1e-06"),
        ({"steps": 3}, "steps=3; expected an int >= 5"),
        ({"sweeps": 0}, "sweeps=0; expected an int >= 1"),
        ({"diverge": 1}, "diverge=1; expected a number > 1"),
        ({"batch_size": "full"}, "batch_size='full'; expected an int >= 1"),
        ({"divisor": 0.5}, "divisor=0.5; expected a number > 1 or None"),
        ({"warmup_anneal": 1}, "warmup_anneal=1; expected True or False"),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], message: str) -> None:
    model = nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ConfigError, match="lr_find: invalid " + message.replace("(", r"\(")):
        lr_find(model, opt, nn.functional.mse_loss, torch.zeros(4, 2), torch.zeros(4, 1), **kwargs)


def test_fit_rejects_auto_for_closure_optimizers() -> None:
    X, y = classification(100)
    data = SimpleNamespace(X_train=X, y_train=(y > 0).float(), X_val=None, y_val=None, task="binary")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ConfigError, match="lr='auto' does not apply to"):
            descend.fit("logistic", data, optimizer="lbfgs", lr="auto", batch_size="full", epochs=1)


def test_adaptive_optimizers_are_told_apart() -> None:
    w = [nn.Parameter(torch.zeros(2))]
    yes: list[torch.optim.Optimizer] = [descend.optim.Adam(w), descend.optim.RMSprop(w), descend.optim.Adagrad(w),
                                        torch.optim.AdamW(w)]  # fmt: skip
    no: list[torch.optim.Optimizer] = [descend.optim.SGD(w, lr=0.1), descend.optim.Nesterov(w),
                                       torch.optim.SGD(w, lr=0.1, momentum=0.9)]  # fmt: skip
    assert [adaptive(opt) for opt in yes] == [True] * 4
    assert [adaptive(opt) for opt in no] == [False] * 3


def test_models_linear_in_their_parameters_are_told_apart() -> None:
    from descend.models import LinearRegression, LinearSVM, LogisticRegression, SoftmaxRegression
    from descend.tune.lr_find import linear_in_parameters

    yes = [LinearRegression(4, 1), LogisticRegression(4), SoftmaxRegression(4, 3), LinearSVM(4, 1), nn.Linear(4, 2),
           nn.Sequential(nn.Flatten(), nn.Dropout(0.1), nn.Linear(4, 1))]  # fmt: skip
    no = [MLP(4, 1, hidden=(8,)), nn.Sequential(nn.Linear(4, 1), nn.Sigmoid()),
          nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 1)), nn.Sequential(nn.BatchNorm1d(4), nn.Linear(4, 1))]  # fmt: skip
    assert [linear_in_parameters(m) for m in yes] == [True] * len(yes)
    assert [linear_in_parameters(m) for m in no] == [False] * len(no)


@pytest.mark.parametrize(("momentum", "nesterov"), [(0.0, False), (0.9, False), (0.5, True)])
def test_stability_edge_is_where_gradient_descent_on_a_quadratic_diverges(momentum: float, nesterov: bool) -> None:
    # Least squares: Hessian (2/n) XᵀX, eigenvalues by numpy (the oracle). Closed forms of the edge: 2/λ plain,
    # (2+2μ)/λ heavy ball, (2+2μ)/((1+2μ)λ) Nesterov; and the iteration itself, full batch, 400 steps from zero:
    # just inside the edge it converges, just outside it blows up.
    from descend.tune.lr_find import stability_edge

    g = torch.Generator().manual_seed(1)
    X = torch.randn(200, 4, generator=g, dtype=torch.float64) * torch.tensor([2.0, 1.0, 0.5, 0.1], dtype=torch.float64)
    y = X @ torch.randn(4, generator=g, dtype=torch.float64)
    lam = float(np.linalg.eigvalsh(2 / 200 * X.numpy().T @ X.numpy()).max())
    closed = ((2 + 2 * momentum) / (1 + 2 * momentum) if nesterov else 2 + 2 * momentum) / lam

    def run(lr: float) -> tuple[nn.Module, torch.optim.Optimizer, float]:
        model = nn.Linear(4, 1, bias=False).double()
        nn.init.zeros_(model.weight)
        opt = descend.optim.SGD(model.parameters(), lr=lr, momentum=momentum, nesterov=nesterov)
        for _ in range(400):
            opt.zero_grad()
            loss = nn.functional.mse_loss(model(X), y.unsqueeze(1))
            loss.backward()
            opt.step()
        return model, opt, float(loss)

    model, opt, _ = run(0.0)
    edge = stability_edge(model, opt, lambda: nn.functional.mse_loss(model(X), y.unsqueeze(1)))
    assert edge == pytest.approx(closed, rel=1e-3)
    assert run(0.97 * edge)[2] < 1e-3 and not run(1.03 * edge)[2] < 1e3


def test_linear_model_suggestion_is_capped_at_the_edge() -> None:
    # The constructed curve's lowest point is near 0.1; an edge of 0.01 caps it before the division.
    u = np.linspace(-6, 0.5, 120)
    loss = np.where(u < -3, 1.0, np.where(u < -1, 1.0 - 0.45 * (u + 3), 0.1 + 4 * (u + 1) ** 2))
    sweep = suggest(list(10**u), list(loss), divisor=1.5, edge=0.01)
    assert sweep.lowest is not None and sweep.lowest > 0.05
    assert sweep.suggestion == pytest.approx(0.01 / 1.5)


@pytest.mark.parametrize(("name", "expected"), [("warmup-cosine", True), ("one-cycle", True), ("cosine", False),
                                                ("constant", False), ("step", False), ("exponential", False),
                                                ("plateau", False)])  # fmt: skip
def test_warm_up_and_annealing_is_read_from_the_schedule(name: str, expected: bool) -> None:
    # By the definition: starts at or below half the peak (warm-up-cosine at 0, one-cycle at 1/25) and falls to
    # half of it for good before the end; a cosine and the decays start at the peak, the plateau follows a metric.
    from descend.schedules import named
    from descend.tune.auto import warms_up_and_anneals

    assert warms_up_and_anneals(named(name, 0.01, total_steps=500), 500) is expected


def test_transformers_are_told_apart() -> None:
    from descend.models import GPT
    from descend.tune.lr_find import kind

    gpt = GPT(11, layers=1, heads=2, dim=16, block=8)
    mlp = MLP(4, 1, hidden=(8,))
    attention = nn.Sequential(nn.MultiheadAttention(8, 2))
    adam = [lambda m: descend.optim.Adam(m.parameters()), lambda m: torch.optim.AdamW(m.parameters())]
    assert [kind(m, make(m)) for m in (gpt, attention) for make in adam] == ["transformer"] * 4
    assert kind(mlp, descend.optim.Adam(mlp.parameters())) == "adaptive"
    assert kind(gpt, descend.optim.SGD(gpt.parameters(), lr=0.1)) == "network"


def sweep_lowest(found: Any) -> list[float]:
    return [s.lowest for s in found.sweeps]


@pytest.mark.parametrize(("model", "divisor"), [("mlp", 10.0), ("gpt", 2.0)])
def test_the_peak_of_a_warm_up_cosine_is_the_lowest_loss_rate_over_less(tmp_path: Path, model: str,
                                                                         divisor: float) -> None:  # fmt: skip
    # The sweeps do not depend on the schedule (the same lowest-loss rates, bit for bit); only the divisor
    # does: 20 for a constant rate, 10 (an MLP) or 2 (a transformer) for the peak of warm-up-cosine. And the
    # range test alone (find_lr, what `descend lr-find` runs) picks the training run's rate to the digit.
    if model == "mlp":
        X, y = classification()
        spec, data, options = MLP(hidden=(16,)), (X, y), {"epochs": 8, "batch_size": 32}
    else:
        text = "".join(f"{w} {x}, {w}.\n" for w in ("to be", "or not", "that is") for x in ("the question", "so"))
        (tmp_path / "t.txt").write_text(text * 40)
        spec, data, options = "gpt:layers=1,heads=2,dim=16,block=16", tmp_path / "t.txt", {"max_steps": 300}
    common: dict[str, Any] = {"optimizer": "adam", "seed": 0, "progress": False, **options}
    constant = descend.tune.find_lr(copy.deepcopy(spec), data, **common)
    peak = descend.tune.find_lr(copy.deepcopy(spec), data, schedule="warmup-cosine", **common)
    assert not constant.fallback and not peak.fallback
    assert sweep_lowest(peak) == sweep_lowest(constant)
    assert [s.suggestion for s in peak.sweeps] == [s.lowest / divisor for s in peak.sweeps]  # type: ignore[operator]
    assert [s.suggestion for s in constant.sweeps] == [s.lowest / 20 for s in constant.sweeps]  # type: ignore[operator]
    assert f"divided by {divisor:g}" in peak.reason and "warm-up and annealing" in peak.reason
    # a transformer under Adam sweeps from 1e-4, other models from 1e-5
    assert {s.lrs[0] for s in peak.sweeps} == {1e-4 if model == "gpt" else 1e-5}
    trained = descend.fit(copy.deepcopy(spec), data, lr="auto", schedule="warmup-cosine", **common)
    assert trained.lr_find.lr == peak.lr and trained.lr_find.reason == peak.reason
