"""The compiled fast path runs the same rules as the readable one: held to it step by step.

Tolerance: fused kernels may round differently (e.g. fused multiply-add), so parameters and state agree to 1e-12
relative in float64 and 1e-5 in float32 after 30 steps, with a changing learning rate (which must not recompile).
"""

from __future__ import annotations

import pytest
import torch

import descend.optim as D
from descend.optim.fast import compiler_available
from tests.test_optim_oracle import assert_rel_close, fake_grad

pytestmark = pytest.mark.skipif(not compiler_available(), reason="torch.compile needs a C++ compiler")

CONFIGS = [
    ("adam-amsgrad-wd", lambda ps, c: D.Adam(ps, lr=lambda t: 0.01 / (1 + t), amsgrad=True, weight_decay=0.1, compile=c)),
    ("sgd-nesterov", lambda ps, c: D.SGD(ps, lr=0.05, momentum=0.9, nesterov=True, compile=c)),
    ("rmsprop-centered-momentum", lambda ps, c: D.RMSprop(ps, lr=0.01, momentum=0.5, centered=True, compile=c)),
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize(("name", "make"), CONFIGS, ids=[c[0] for c in CONFIGS])
def test_compiled_matches_readable(name, make, dtype):
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    gen = torch.Generator().manual_seed(0)
    shapes = [(40, 30), (30,), (0,)]
    a = [torch.nn.Parameter(torch.randn(s, generator=gen, dtype=dtype)) for s in shapes]
    b = [torch.nn.Parameter(p.detach().clone()) for p in a]
    fast, ref = make(a, True), make(b, False)
    for step in range(30):
        for i, (x, y) in enumerate(zip(a, b)):
            g = fake_grad(y, step, i)
            x.grad, y.grad = g.clone(), g.clone()
        fast.step()
        ref.step()
    assert fast._fast is not None and ref._fast is None
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    for x, y in zip(a, b):
        assert_rel_close(x.detach(), y.detach(), tol, "param")
        for key, v in ref.state[y].items():
            if isinstance(v, torch.Tensor):
                assert_rel_close(fast.state[x][key], v, tol, key)
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    assert graphs <= 4, f"{graphs} graphs compiled: a changing lr or step must not recompile"


def test_auto_compiles_only_large_models():
    small = D.Adam([torch.nn.Parameter(torch.zeros(10))])
    small.param_groups[0]["params"][0].grad = torch.ones(10)
    small.step()
    assert small._fast is None
