"""The fast path runs the same rules as the readable one: held to it step by step.

Flat buckets without compiling run the readable rule itself on gathered tensors: the same operations on the same
numbers, so parameters and state agree exactly. Compiled kernels may round differently (e.g. fused multiply-add),
so there they agree to 1e-12 relative in float64 and 1e-5 in float32 after 30 steps, with a changing learning
rate (which must not recompile).
"""

from __future__ import annotations

import io

import pytest
import torch

import descend.optim as D
import descend.optim.fast as fast_module
from descend.optim.fast import compiler_available
from tests.test_optim_oracle import assert_rel_close, fake_grad

needs_compiler = pytest.mark.skipif(not compiler_available(), reason="torch.compile needs a C++ compiler")

CONFIGS = [
    ("adam-amsgrad-wd", lambda ps, c: D.Adam(ps, lr=lambda t: 0.01 / (1 + t), amsgrad=True, weight_decay=0.1, compile=c)),
    ("sgd-nesterov", lambda ps, c: D.SGD(ps, lr=0.05, momentum=0.9, nesterov=True, compile=c)),
    ("rmsprop-centered-momentum", lambda ps, c: D.RMSprop(ps, lr=0.01, momentum=0.5, centered=True, compile=c)),
]


@needs_compiler
@pytest.mark.parametrize("flat", [True, False], ids=["flat", "per-tensor"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize(("name", "make"), CONFIGS, ids=[c[0] for c in CONFIGS])
def test_compiled_matches_readable(name, make, dtype, flat, monkeypatch):
    if not flat:  # every parameter gets a compiled call of its own
        monkeypatch.setattr(fast_module, "FLAT_MAX", 0)
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


FLAT_CONFIGS = [
    *CONFIGS,
    ("adamw-mask", lambda ps, c: D.AdamW(ps, lr=0.01, weight_decay=0.1, weight_decay_mask="matrices", compile=c)),
    ("adagrad-maximize", lambda ps, c: D.Adagrad(ps, lr=0.1, lr_decay=0.01, maximize=True, compile=c)),
    ("groups", lambda ps, c: D.Adam([{"params": ps[:2], "lr": 0.02}, {"params": ps[2:], "betas": (0.5, 0.9)}],
                                    lr=0.01, compile=c)),
]


def _flat_run(make, compile, steps=30, dtype=torch.float64, save_at=None):
    gen = torch.Generator().manual_seed(0)
    ps = [torch.nn.Parameter(torch.randn(s, generator=gen, dtype=dtype)) for s in [(7, 5), (5,), (0,), (3, 2, 2), (4,)]]
    opt = make(ps, compile)
    for step in range(steps):
        if save_at is not None and step == save_at:
            buffer = io.BytesIO()
            torch.save(opt.state_dict(), buffer)
            buffer.seek(0)
            opt = make(ps, compile)
            opt.load_state_dict(torch.load(buffer, weights_only=True))
        for i, p in enumerate(ps):
            # Parameter 3 has no gradient on every third step: its bucket's members change, and come back.
            p.grad = None if (i == 3 and step % 3 == 1) else fake_grad(p, step, i)
        if step == 10:
            for group in opt.param_groups:
                group["lr"] = group["lr"] / 2 if not callable(group.get("lr_schedule")) else group["lr"]
        opt.step()
    return ps, opt


@pytest.mark.parametrize(("name", "make"), FLAT_CONFIGS, ids=[c[0] for c in FLAT_CONFIGS])
def test_flat_buckets_match_readable_exactly(name, make):
    a, fast = _flat_run(make, "auto")
    b, ref = _flat_run(make, False)
    assert fast._fast is not None and fast._fast._fn is None and ref._fast is None
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=0, atol=0)
        assert fast.state[x].keys() == ref.state[y].keys()
        for key, v in ref.state[y].items():
            torch.testing.assert_close(fast.state[x][key], v, rtol=0, atol=0, msg=key)
    # The small parameters' state really is flat: views into a buffer that holds more than one parameter.
    views = [v for p in a for k, v in fast.state[p].items() if k != "step" and isinstance(v, torch.Tensor)]
    assert any(v.untyped_storage().nbytes() > v.numel() * v.element_size() for v in views)


@pytest.mark.parametrize(("name", "make"), FLAT_CONFIGS, ids=[c[0] for c in FLAT_CONFIGS])
def test_flat_state_dict_round_trip_continues_identically(name, make):
    a, _ = _flat_run(make, "auto")
    b, _ = _flat_run(make, "auto", save_at=13)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=0, atol=0)


def test_flat_bucket_adopts_a_state_buffer_made_during_the_step():
    # Momentum switched on after the first step creates its buffer lazily, inside the rule.
    a = [torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(2, 2))]
    b = [torch.nn.Parameter(p.detach().clone()) for p in a]
    fast, ref = D.SGD(a, lr=0.1), D.SGD(b, lr=0.1, compile=False)
    for step in range(5):
        if step == 2:
            fast.param_groups[0]["momentum"] = ref.param_groups[0]["momentum"] = 0.9
        for x, y in zip(a, b):
            x.grad, y.grad = x.detach() * (step + 1), y.detach() * (step + 1)
        fast.step()
        ref.step()
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=0, atol=0)
        torch.testing.assert_close(fast.state[x]["momentum_buffer"], ref.state[y]["momentum_buffer"], rtol=0, atol=0)


def test_flat_step_counts_are_per_parameter_tensors_torch_optim_loads():
    # A bucket's step counts are 0-d views into one buffer, counted together; saved, each is a step tensor of its
    # own, which torch.optim.Adam loads and continues from as from its own state.
    gen = torch.Generator().manual_seed(0)
    ps = [torch.nn.Parameter(torch.randn(s, generator=gen, dtype=torch.float64)) for s in [(3, 2), (4,)]]
    ours = D.Adam(ps, lr=0.1)
    for step in range(3):
        for i, p in enumerate(ps):
            p.grad = fake_grad(p, step, i)
        ours.step()
    steps = [ours.state[p]["step"] for p in ps]
    assert steps[0].untyped_storage().data_ptr() == steps[1].untyped_storage().data_ptr()
    buffer = io.BytesIO()
    torch.save(ours.state_dict(), buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    counts = [st["step"] for key, st in saved["state"].items() if isinstance(key, int)]
    assert len(counts) == 2 and all(t.shape == () and float(t) == 3 for t in counts)
    qs = [torch.nn.Parameter(p.detach().clone()) for p in ps]
    theirs = torch.optim.Adam(qs, lr=0.1)
    theirs.load_state_dict(saved)
    for step in range(3, 6):
        for i, (p, q) in enumerate(zip(ps, qs)):
            p.grad = fake_grad(p, step, i)
            q.grad = p.grad.clone()
        ours.step()
        theirs.step()
    for p, q in zip(ps, qs):
        assert_rel_close(p.detach(), q.detach(), 1e-10, "param")
        assert float(ours.state[p]["step"]) == float(theirs.state[q]["step"]) == 6


def test_auto_compiles_only_large_models():
    small = D.Adam([torch.nn.Parameter(torch.zeros(10))])
    small.param_groups[0]["params"][0].grad = torch.ones(10)
    small.step()
    assert small._fast is not None and small._fast._fn is None


def test_auto_weighs_the_compile_against_the_planned_updates(monkeypatch):
    """With the updates planned, parameters x updates decide (COMPILE_MIN_WORK); without, the count alone; a plan
    given after the first step changes nothing, and compile=False or True is never overridden."""
    monkeypatch.setattr(fast_module, "compiler_available", lambda: True)
    big = [torch.nn.Parameter(torch.zeros(2**20))]
    mid = [torch.nn.Parameter(torch.zeros(932_000))]
    assert fast_module.worth_compiling([{"params": big}])
    assert not fast_module.worth_compiling([{"params": mid}])
    need = -(-fast_module.COMPILE_MIN_WORK // 932_000)  # the fewest updates for which the 932k compile pays
    for planned, compiles in ((need - 1, False), (need, True)):
        opt = D.Adam(mid)
        opt.plan(planned)
        assert opt.compiles is compiles
    short = D.Adam(big)
    short.plan(100)  # a million entries for 100 updates: seconds of compile for milliseconds of gain
    assert short.compiles is False
    stepped = D.Adam([torch.nn.Parameter(torch.zeros(932_000))])
    stepped.param_groups[0]["params"][0].grad = torch.ones(932_000)
    stepped.step()  # decided at the first step: eager (no plan yet)
    stepped.plan(need)
    assert stepped.compiles is False
    assert D.Adam(mid, compile=False).compiles is False
    forced = D.Adam(mid, compile=True)
    forced.plan(1)
    assert forced.compiles is True


@pytest.mark.filterwarnings("ignore::descend.train.ConvergenceWarning")
def test_fit_plans_the_optimizer_and_records_a_compiled_rule(monkeypatch, tmp_path):
    """fit tells a descend optimizer its planned updates before the first step (the run record says when the
    rules compile); a compiled training step leaves the optimizer's own rules eager."""
    import json

    import descend

    seen = []
    monkeypatch.setattr(D.ChainOptimizer, "plan", lambda self, n: seen.append(n) or setattr(self, "_planned", n))
    X, y = torch.randn(64, 3), torch.randn(64)
    descend.fit(torch.nn.Linear(3, 1), (X, y), optimizer="adam", lr=0.01, batch_size=16, epochs=3, compile=False,
                accumulate=2, early_stopping=False, diagnostics=False, progress=False)  # fmt: skip
    assert seen == [6]  # 4 batches x 3 epochs, one update per 2
    monkeypatch.setattr(fast_module, "COMPILE_MIN_WORK", 4 * 12)  # 4 parameters x 12 updates: compile
    monkeypatch.setattr(fast_module, "compiler_available", lambda: True)
    monkeypatch.setattr(fast_module.FastRules, "__init__", _record_compile(fast_module.FastRules.__init__))
    descend.fit(torch.nn.Linear(3, 1), (X, y), optimizer="adam", lr=0.01, batch_size=16, epochs=3, compile=False,
                early_stopping=False, diagnostics=False, progress=False, run_dir=tmp_path / "run")  # fmt: skip
    step = json.loads((tmp_path / "run" / "config.json").read_text())["resolved"]["step"]
    assert step.endswith("; the optimizer's rules compiled (4 parameters x 12 updates)"), step


def _record_compile(init):
    def make(self, *, compile):
        init(self, compile=False)  # the decision is what is tested here: no compile runs
        self.compile = compile
    return make


# Compiled chunks: large parameters (here >= 16 entries) go through the compiled function CHUNK (here 3) at a time.
# Two groups, sizes that differ (one graph serves them all: shapes are dynamic), a remainder chunk, a parameter
# whose gradient is missing every third step (its step count falls behind: a run of its own), a non-contiguous
# parameter (readable path), small ones (a flat bucket, compiled as a chunk of one) and a group holding one
# number (a bucket of size 1, which dynamo specialises: a graph of its own). The lr halves at step 10.
CHUNK_SHAPES = [(5, 6), (40,), (17,), (3, 4, 5), (20,), (2, 9), (33,), (3,), (2, 2)]  # groups: 4 | 3 + 2 small


def _chunk_run(make, compile, monkeypatch, steps=25, dtype=torch.float64, momentum_at=None, save_at=None):
    monkeypatch.setattr(fast_module, "FLAT_MAX", 16)
    monkeypatch.setattr(fast_module, "CHUNK", 3)
    gen = torch.Generator().manual_seed(0)
    ps = [torch.nn.Parameter(torch.randn(s, generator=gen, dtype=dtype)) for s in CHUNK_SHAPES]
    ps.append(torch.nn.Parameter(torch.randn(6, 5, generator=gen, dtype=dtype).t()))  # not contiguous
    ps.append(torch.nn.Parameter(torch.randn(1, generator=gen, dtype=dtype)))
    groups = [{"params": ps[:4]}, {"params": ps[4:-1], "lr": 0.02}, {"params": ps[-1:]}]
    opt = make(groups, compile)
    graphs = []
    for step in range(steps):
        if step == save_at:  # a resume: the state saved and loaded into a new optimizer, which compiles anew
            buffer = io.BytesIO()
            torch.save(opt.state_dict(), buffer)
            buffer.seek(0)
            opt = make([{"params": ps[:4]}, {"params": ps[4:-1], "lr": 0.02}, {"params": ps[-1:]}], compile)
            opt.load_state_dict(torch.load(buffer, weights_only=True))
        for i, p in enumerate(ps):
            p.grad = None if (i == 2 and step % 3 == 1) else fake_grad(p, step, i)
        if step == 10:
            for group in opt.param_groups:
                group["lr"] = group["lr"] / 2
        if momentum_at is not None and step == momentum_at:
            for group in opt.param_groups:
                group["momentum"] = 0.9
        opt.step()
        if opt._fast is not None and opt._fast._fn is not None:
            graphs.append(opt._fast._fn.graphs())
    return ps, opt, graphs


def _assert_same(a, fast, b, ref, tol):
    for x, y in zip(a, b):
        assert_rel_close(x.detach(), y.detach(), tol, "param")
        assert fast.state[x].keys() == ref.state[y].keys()
        for key, v in ref.state[y].items():
            if isinstance(v, torch.Tensor):
                assert_rel_close(fast.state[x][key], v, tol, key)


CHUNK_CONFIGS = [
    ("adam", lambda ps, c: D.Adam(ps, lr=0.01, betas=(0.8, 0.99), compile=c)),
    ("sgd-momentum", lambda ps, c: D.SGD(ps, lr=0.05, momentum=0.9, compile=c)),
]


@needs_compiler
@pytest.mark.parametrize(("name", "make"), CHUNK_CONFIGS, ids=[c[0] for c in CHUNK_CONFIGS])
def test_compiled_chunks_match_readable(name, make, monkeypatch):
    # Compiled kernels may fuse a multiply and an add (one rounding instead of two): 1e-12 relative in float64.
    torch._dynamo.utils.counters.clear()
    a, fast, graphs = _chunk_run(make, True, monkeypatch)
    b, ref, _ = _chunk_run(make, False, monkeypatch)
    _assert_same(a, fast, b, ref, 1e-12)
    # Chunks of 3 and of 1 (the remainder, the lagging parameter and the bucket), and the bucket of one number:
    # three graphs, made in the first two steps; neither the changing step count, nor the lr, nor sizes
    # recompile.
    assert graphs[1] == graphs[-1] == 3, graphs
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 3
    assert fast._fast is not None and all(fast._fast._fn.known.values())
    # The non-contiguous parameter ran the readable path and is not in any compiled run.
    runs = fast._fast._cached[2]
    assert all(len(CHUNK_SHAPES) not in run.members for run in runs)


@needs_compiler
def test_compiled_chunks_stop_compiling_at_the_graph_cap(monkeypatch):
    # Momentum switched on at step 5 needs new graphs (other rules; at that step the rule makes its buffer inside
    # the compiled function, for the bucket and for the lagging parameter's chunk of one). With room for 3 graphs
    # the configurations past the third run the readable path: no thrashing, the same numbers.
    monkeypatch.setattr(fast_module, "MAX_GRAPHS", 3)
    def make(ps, c):
        return D.SGD(ps, lr=0.05, momentum=0.0, compile=c)

    a, fast, graphs = _chunk_run(make, True, monkeypatch, steps=12, momentum_at=5)
    b, ref, _ = _chunk_run(make, False, monkeypatch, steps=12, momentum_at=5)
    _assert_same(a, fast, b, ref, 1e-12)
    assert max(graphs) == 3, graphs
    known = list(fast._fast._fn.known.values())
    assert known.count(True) == 3 and known.count(False) >= 1, fast._fast._fn.known


@needs_compiler
@pytest.mark.parametrize(("name", "make"), CHUNK_CONFIGS, ids=[c[0] for c in CHUNK_CONFIGS])
def test_uniform_chunks_share_one_graph_across_sizes(name, make, monkeypatch):
    # Chunks of 3: four tensors of 20 entries and three of 30 make one full chunk of each size (the uniform
    # graph, one size symbol: one graph for both sizes); the fourth 20, a 17 and a 40 make a mixed chunk.
    monkeypatch.setattr(fast_module, "FLAT_MAX", 16)
    monkeypatch.setattr(fast_module, "CHUNK", 3)
    shapes = [(20,), (5, 6), (20,), (17,), (5, 6), (20,), (40,), (20,), (6, 5)]

    def run(compile):
        gen = torch.Generator().manual_seed(1)
        ps = [torch.nn.Parameter(torch.randn(s, generator=gen, dtype=torch.float64)) for s in shapes]
        opt = make(ps, compile)
        for step in range(25):
            for i, p in enumerate(ps):
                p.grad = fake_grad(p, step, i)
            if step == 10:
                opt.param_groups[0]["lr"] /= 2
            opt.step()
        return ps, opt

    a, fast = run(True)
    b, ref = run(False)
    _assert_same(a, fast, b, ref, 1e-12)
    (only,) = fast._fast._cached[2]
    assert [(len(c), uniform) for c, uniform in only.chunks] == [(3, True), (3, True), (3, False)]
    assert fast._fast._uniform.graphs() == 1 and fast._fast._fn.graphs() == 1


@needs_compiler
@pytest.mark.parametrize(("name", "make"), CHUNK_CONFIGS, ids=[c[0] for c in CHUNK_CONFIGS])
def test_chunks_called_without_dynamo_compute_what_dynamos_calls_compute(name, make, monkeypatch):
    # Oracle: the same run with every chunk called through torch.compile's dynamo (no direct calls). The same
    # compiled kernels run on the same tensors, so parameters and state agree bit for bit; and after the step
    # that compiled them, every graph of both kinds of chunk (uniform, mixed) is called directly.
    a, fast, _ = _chunk_run(make, True, monkeypatch)
    monkeypatch.setattr(fast_module._Direct, "make", classmethod(lambda cls, captured, tensors: None))
    b, slow, _ = _chunk_run(make, True, monkeypatch)
    for x, y in zip(a, b):
        assert torch.equal(x, y)
        assert fast.state[x].keys() == slow.state[y].keys()
        for key, v in slow.state[y].items():
            assert torch.equal(fast.state[x][key], v) if isinstance(v, torch.Tensor) else fast.state[x][key] == v
    rules = fast._fast
    assert rules._fn._direct and rules._fn._direct.keys() == {k for k, v in rules._fn.known.items() if v}
    assert not slow._fast._fn._direct and not slow._fast._uniform._direct


@needs_compiler
def test_a_graph_that_creates_state_is_never_called_without_dynamo():
    # SGD's momentum rule makes its buffer inside the compiled function when momentum is switched on after the
    # first step; dynamo stores it into the state dict after the graph ran. Two chunks with the same signature
    # (no buffer yet): the second, called after the first compiled the graph, must get its buffer too.
    opt = D.SGD([torch.nn.Parameter(torch.zeros(4, dtype=torch.float64))], lr=0.1, momentum=0.9)
    (rule,) = [tr for tr in opt.transforms if isinstance(tr, fast_module.PerParam) and tr.state_names]
    compiled = fast_module._Compiled()
    scalars = (fast_module._as_tensors(rule.scalars(opt.param_groups[0], 2), torch.float64),)
    flags = tuple(v for s in scalars for v in s.values() if isinstance(v, bool))
    results = []
    for _ in range(2):
        gs = [torch.ones(8, dtype=torch.float64) for _ in range(2)]
        ps = [torch.zeros(8, dtype=torch.float64) for _ in range(2)]
        states: list[dict[str, torch.Tensor]] = [{}, {}]
        assert compiled(("sig", flags), (rule,), gs, ps, states, scalars)
        results.append((ps, states))
    assert not compiled._direct
    # Oracle: the same function run eagerly (the readable rule on the same tensors).
    ps, states = [torch.zeros(8, dtype=torch.float64) for _ in range(2)], [{}, {}]
    fast_module._apply_chunk((rule,), [torch.ones(8, dtype=torch.float64)] * 2, ps, states, scalars)
    for got, made in results:
        assert all(torch.equal(p, q) for p, q in zip(got, ps))
        assert all(torch.equal(st["momentum_buffer"], ref["momentum_buffer"]) for st, ref in zip(made, states))


@needs_compiler
def test_the_compiling_calls_tensors_are_not_kept(monkeypatch):
    # The capturing backend sees the compiling call's inputs; once the direct call is made from them, nothing of
    # that call may stay alive (for a large model, a step's gradients are as big as the model).
    import gc
    import weakref

    monkeypatch.setattr(fast_module, "FLAT_MAX", 16)
    ps = [torch.nn.Parameter(torch.randn(40, dtype=torch.float64)) for _ in range(4)]
    opt = D.SGD(ps, lr=0.1, momentum=0.9, compile=True)
    for p in ps:
        p.grad = torch.randn(40, dtype=torch.float64)
    first = [weakref.ref(p.grad) for p in ps]
    opt.step()
    for p in ps:
        p.grad = torch.randn(40, dtype=torch.float64)
    opt.step()
    gc.collect()
    assert opt._fast._fn._direct  # the graph is called directly from the second step on
    assert all(ref() is None for ref in first)


@needs_compiler
@pytest.mark.parametrize(("name", "make"), CHUNK_CONFIGS, ids=[c[0] for c in CHUNK_CONFIGS])
def test_compiled_chunks_resume_bit_for_bit(name, make, monkeypatch):
    # Oracle: the same run without the interruption. Saved at step 13 (chunks called directly by then, the lr
    # halved at step 10) and loaded into a new optimizer, the run continues to the same numbers bit for bit.
    a, whole, _ = _chunk_run(make, True, monkeypatch)
    b, resumed, _ = _chunk_run(make, True, monkeypatch, save_at=13)
    for x, y in zip(a, b):
        assert torch.equal(x, y)
        for key, v in whole.state[x].items():
            assert torch.equal(resumed.state[y][key], v) if isinstance(v, torch.Tensor) else resumed.state[y][key] == v
    assert resumed._fast._fn._direct  # the resumed optimizer's chunks were called directly too
