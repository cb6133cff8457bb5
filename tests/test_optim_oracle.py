"""descend's named optimizers against torch.optim: same start, same gradients, 100 steps.

Tolerance: parameters and every state tensor torch keeps agree to 1e-10 relative in float64 and 1e-5 in
float32 (relative to the largest magnitude of the compared tensor, so entries near zero do not divide by zero).
"""

from __future__ import annotations

import copy

import pytest
import torch

from tests.optim_cases import CASES, GROUP_OVERRIDES

TOL = {torch.float64: 1e-10, torch.float32: 1e-5}
STEPS = 100


def make_params(dtype: torch.dtype) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(0)
    shapes = [(5, 3), (3,), (2, 2, 2), (0,), (1,)]  # includes a zero-size parameter
    return [torch.nn.Parameter(torch.randn(s, generator=g, dtype=dtype)) for s in shapes]


def fake_grad(p: torch.Tensor, step: int, i: int) -> torch.Tensor:
    """A gradient that depends on the parameter (so decay and state matter) plus seeded noise."""
    g = torch.Generator().manual_seed(1000 * step + i)
    return 0.5 * p.detach() + torch.randn(p.shape, generator=g, dtype=p.dtype)


def assert_rel_close(a: torch.Tensor, b: torch.Tensor, tol: float, what: str) -> None:
    scale = max(b.abs().max().item() if b.numel() else 0.0, 1e-30)
    err = (a - b).abs().max().item() / scale if b.numel() else 0.0
    assert err <= tol, f"{what}: relative difference {err:.3g} > {tol:g}"


def run_pair(ours_cls, theirs_cls, kw, dtype, *, groups=False, override=None, none_grad_at=(), frozen=False):
    ps_a, ps_b = make_params(dtype), make_params(dtype)
    if frozen:
        ps_a[0].requires_grad_(False)
        ps_b[0].requires_grad_(False)

    def build(cls, ps):
        if groups:
            return cls([{"params": ps[:2]}, {"params": ps[2:], **override}], **kw)
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
    tol = TOL[dtype]
    for i, (a, b) in enumerate(zip(ps_a, ps_b)):
        assert_rel_close(a.detach(), b.detach(), tol, f"param {i}")
        if not a.requires_grad:
            continue  # torch.optim.Adagrad gives even frozen parameters a state; descend keeps none
        for key, ref in opt_b.state[b].items():
            if isinstance(ref, torch.Tensor):
                assert key in opt_a.state[a], f"state {key!r} missing for param {i}"
                assert_rel_close(opt_a.state[a][key], ref, tol, f"state {key} of param {i}")
    return ps_a, opt_a


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize(("case", "ours", "theirs", "kw"), CASES, ids=[c[0] for c in CASES])
def test_matches_torch(case, ours, theirs, kw, dtype):
    run_pair(ours, theirs, kw, dtype)


@pytest.mark.parametrize(("case", "ours", "theirs", "kw"), CASES, ids=[c[0] for c in CASES])
def test_matches_torch_with_param_groups(case, ours, theirs, kw):
    override = GROUP_OVERRIDES[case.split("-")[0]]
    run_pair(ours, theirs, kw, torch.float64, groups=True, override=override)


@pytest.mark.parametrize(("case", "ours", "theirs", "kw"), CASES[::3], ids=[c[0] for c in CASES[::3]])
def test_grad_none_at_some_steps_and_frozen_layer(case, ours, theirs, kw):
    ps, opt = run_pair(ours, theirs, kw, torch.float64, none_grad_at={3, 4, 50}, frozen=True)
    assert ps[0] not in opt.state  # the frozen parameter never gets state
    if "step" in opt.state[ps[1]]:
        assert int(opt.state[ps[1]]["step"]) == STEPS - 3


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
        assert_rel_close(a.detach(), b.detach(), 1e-12, "param")
