"""descend's named optimizers against torch.optim: same start, same gradients, 100 steps.

Tolerance: parameters and every state tensor torch keeps agree in two ways. (1) Relative to the largest
magnitude of the compared tensor, 1e-10 in float64 and 1e-5 in float32, so entries near zero do not divide by
zero. (2) Element by element, ``torch.testing.assert_close`` with ``|a - b| <= atol + rtol * |b|``: rtol 1e-10,
atol 1e-14 in float64 and rtol 1e-5, atol 1e-6 in float32. The tensors are of order 1, so an entry near zero
carries the absolute rounding of the order-1 values it came from; atol is a few ulps of 1 for that (~45 in
float64, ~8 in float32; the worst float32 entry measured is 1.5e-7 off at |b| = 0.006, AdamW-3). Step counters
must be equal.
"""

from __future__ import annotations

import copy

import pytest
import torch

from tests.optim_cases import CASES, GROUP_OVERRIDES

TOL = {torch.float64: 1e-10, torch.float32: 1e-5}
ATOL = {torch.float64: 1e-14, torch.float32: 1e-6}
STEPS = 100
DTYPES = pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
ALL_CASES = pytest.mark.parametrize(("case", "ours", "theirs", "kw"), CASES, ids=[c[0] for c in CASES])


def make_params(dtype: torch.dtype) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(0)
    shapes = [(5, 3), (3,), (2, 2, 2), (0,), (1,), (4,)]  # includes a zero-size parameter
    return [torch.nn.Parameter(torch.randn(s, generator=g, dtype=dtype)) for s in shapes]


def fake_grad(p: torch.Tensor, step: int, i: int) -> torch.Tensor:
    """A gradient that depends on the parameter (so decay and state matter) plus seeded noise."""
    g = torch.Generator().manual_seed(1000 * step + i)
    return 0.5 * p.detach() + torch.randn(p.shape, generator=g, dtype=p.dtype)


def assert_rel_close(a: torch.Tensor, b: torch.Tensor, tol: float, what: str, atol: float | None = None) -> None:
    """Max-norm relative difference <= tol; with atol, also every element within atol + tol * |b|."""
    assert a.shape == b.shape, f"{what}: shape {tuple(a.shape)} != {tuple(b.shape)}"
    scale = max(b.abs().max().item() if b.numel() else 0.0, 1e-30)
    err = (a - b).abs().max().item() / scale if b.numel() else 0.0
    assert err <= tol, f"{what}: relative difference {err:.3g} > {tol:g}"
    if atol is not None:
        torch.testing.assert_close(a, b, rtol=tol, atol=atol, msg=lambda m: f"{what}: {m}")


def run_pair(ours_cls, theirs_cls, kw, dtype, *, overrides=(), none_grad_at=(), frozen=False):
    ps_a, ps_b = make_params(dtype), make_params(dtype)
    if frozen:
        ps_a[0].requires_grad_(False)
        ps_b[0].requires_grad_(False)

    def build(cls, ps):
        if overrides:  # group 1: params 0-1 with the case's values; group k: two more params, overrides[k - 2]
            chunks = [ps[2 * k : 2 * k + 2] for k in range(len(overrides) + 1)]
            assert sum(map(len, chunks)) == len(ps)
            return cls([{"params": chunks[0]}] + [{"params": c, **o} for c, o in zip(chunks[1:], overrides)], **kw)
        return cls(ps, **kw)

    opt_a, opt_b = build(ours_cls, ps_a), build(theirs_cls, ps_b)
    for step in range(STEPS):
        for i, (a, b) in enumerate(zip(ps_a, ps_b)):
            if not a.requires_grad or (step in none_grad_at and i == 1):
                a.grad = b.grad = None
                continue
            g = fake_grad(b, step, i)
            a.grad, b.grad = g.clone(), g.clone()
        opt_a.step()
        opt_b.step()
    tol, atol = TOL[dtype], ATOL[dtype]
    for i, (a, b) in enumerate(zip(ps_a, ps_b)):
        assert_rel_close(a.detach(), b.detach(), tol, f"param {i}", atol)
        if not a.requires_grad:
            continue  # torch.optim.Adagrad gives even frozen parameters a state; descend keeps none
        for key, ref in opt_b.state[b].items():
            if not isinstance(ref, torch.Tensor):
                continue
            assert key in opt_a.state[a], f"state {key!r} missing for param {i}"
            if key == "step":
                assert float(opt_a.state[a][key]) == float(ref), f"step count of param {i}"
            else:
                assert_rel_close(opt_a.state[a][key], ref, tol, f"state {key} of param {i}", atol)
    return ps_a, opt_a


@DTYPES
@ALL_CASES
def test_matches_torch(case, ours, theirs, kw, dtype):
    run_pair(ours, theirs, kw, dtype)


@DTYPES
@ALL_CASES
def test_matches_torch_with_param_groups(case, ours, theirs, kw, dtype):
    """Three groups: the case's values, then two groups with their own hyperparameters (tests/optim_cases.py)."""
    overrides = GROUP_OVERRIDES[case.split("-")[0]]
    assert len(overrides) == 2
    run_pair(ours, theirs, kw, dtype, overrides=overrides)


@DTYPES
@ALL_CASES
def test_grad_none_at_some_steps_and_frozen_layer(case, ours, theirs, kw, dtype):
    ps, opt = run_pair(ours, theirs, kw, dtype, none_grad_at={3, 4, 50}, frozen=True)
    assert ps[0] not in opt.state  # the frozen parameter never gets state
    if "step" in opt.state[ps[1]]:
        assert int(opt.state[ps[1]]["step"]) == STEPS - 3


def test_adagrad_initial_accumulator_is_per_group():
    """A group's own initial_accumulator_value sets its G_0 (torch.optim.Adagrad uses the constructor's for all).

    Closed form of the first step: G_1 = G_0 + g², p_1 = p_0 − α g / (√G_1 + ε).
    """
    import descend.optim as D

    p, q = (torch.nn.Parameter(torch.ones(2, dtype=torch.float64)) for _ in range(2))
    opt = D.Adagrad([{"params": [p]}, {"params": [q], "initial_accumulator_value": 0.3}], lr=0.1, eps=0.0,
                    initial_accumulator_value=1.0)
    p.grad = q.grad = torch.full((2,), 2.0, dtype=torch.float64)
    opt.step()
    assert opt.state[p]["sum"].tolist() == [5.0, 5.0] and opt.state[q]["sum"].tolist() == [4.3, 4.3]
    torch.testing.assert_close(p.detach(), torch.full((2,), 1 - 0.2 / 5**0.5, dtype=torch.float64), rtol=1e-15, atol=0)
    torch.testing.assert_close(q.detach(), torch.full((2,), 1 - 0.2 / 4.3**0.5, dtype=torch.float64), rtol=1e-15, atol=0)


def test_state_loads_from_torch_and_back():
    """A torch.optim.Adam state_dict loads into descend's Adam and the trajectories continue together."""
    import descend.optim as D

    ps_a, ps_b = make_params(torch.float64), make_params(torch.float64)
    theirs = torch.optim.Adam(ps_b, lr=0.01, amsgrad=True)
    for step in range(5):
        for i, b in enumerate(ps_b):
            b.grad = fake_grad(b, step, i)
        theirs.step()
    with torch.no_grad():
        for a, b in zip(ps_a, ps_b):
            a.copy_(b)
    ours = D.Adam(ps_a, lr=0.01, amsgrad=True)
    ours.load_state_dict(copy.deepcopy(theirs.state_dict()))  # as through a file: no shared tensors
    for step in range(5, 20):
        for i, (a, b) in enumerate(zip(ps_a, ps_b)):
            g = fake_grad(b, step, i)
            a.grad, b.grad = g.clone(), g.clone()
        ours.step()
        theirs.step()
    for a, b in zip(ps_a, ps_b):
        assert_rel_close(a.detach(), b.detach(), 1e-12, "param", atol=1e-14)
