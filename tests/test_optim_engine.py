"""The optimizer engine as a torch.optim.Optimizer: transformations, state, closures, schedulers, bad arguments."""

from __future__ import annotations

import io

import pytest
import torch

import descend.optim as D
from descend.schedules import ReduceOnPlateau, cosine_annealing


def params(seed: int = 0, dtype=torch.float64) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(s, generator=g, dtype=dtype)) for s in [(4, 3), (3,)]]


def grads_for(ps, step: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(step)
    return [torch.randn(p.shape, generator=g, dtype=p.dtype) * (1 + step % 3) for p in ps]


def set_grads(ps, gs) -> None:
    for p, g in zip(ps, gs):
        p.grad = g.clone()


# -- transformations against hand-written references ----------------------------------------------------


def test_clip_by_global_norm_matches_torch_clip_grad_norm():
    a, b = params(), params()
    ours = D.chain(a, [D.clip_by_global_norm(0.5), D.scale_by_learning_rate(0.1)])
    theirs = torch.optim.SGD(b, lr=0.1)
    for step in range(20):
        gs = grads_for(a, step)
        set_grads(a, gs)
        set_grads(b, gs)
        ours.step()
        norm = torch.nn.utils.clip_grad_norm_(b, 0.5)
        theirs.step()
        assert ours.state["descend"]["grad_norm"] == pytest.approx(norm.item(), rel=1e-12)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-12)


def test_clip_by_value_matches_torch_clip_grad_value():
    a, b = params(), params()
    ours = D.chain(a, [D.clip_by_value(0.7), D.scale_by_adam(), D.scale_by_learning_rate(0.01)])
    theirs = torch.optim.Adam(b, lr=0.01)
    for step in range(20):
        gs = grads_for(a, step)
        set_grads(a, gs)
        set_grads(b, gs)
        ours.step()
        torch.nn.utils.clip_grad_value_(b, 0.7)
        theirs.step()
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)


def test_accumulate_applies_the_mean_every_k_calls():
    k = 3
    a, b = params(), params()
    ours = D.chain(a, [D.accumulate(k), D.momentum(0.9), D.scale_by_learning_rate(0.1)])
    theirs = torch.optim.SGD(b, lr=0.1, momentum=0.9)
    for cycle in range(5):
        gs = [grads_for(a, k * cycle + i) for i in range(k)]
        for i in range(k):
            set_grads(a, gs[i])
            before = [x.detach().clone() for x in a]
            ours.step()
            if i < k - 1:  # nothing moves until the k-th call
                assert all(torch.equal(x, y) for x, y in zip(a, before))
        set_grads(b, [sum(g[j] for g in gs) / k for j in range(len(b))])
        theirs.step()
        for x, y in zip(a, b):
            torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-12)
    assert ours.updates == 5


def test_skip_non_finite_leaves_parameters_and_state_untouched():
    a, b = params(), params()
    ours = D.chain(a, [D.skip_non_finite(), D.scale_by_adam(), D.scale_by_learning_rate(0.01)])
    theirs = torch.optim.Adam(b, lr=0.01)
    for step in range(10):
        gs = grads_for(a, step)
        if step in (3, 7):
            bad = [g.clone() for g in gs]
            bad[1][0] = float("nan") if step == 3 else float("inf")
            set_grads(a, bad)
            ours.step()  # skipped
        set_grads(a, gs)
        set_grads(b, gs)
        ours.step()
        theirs.step()
    assert ours.state["descend"]["skipped_steps"] == 2
    assert int(ours.state[a[0]]["step"]) == 10
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)


def test_weight_decay_mask_spares_vectors_like_param_groups_in_torch():
    a, b = params(), params()
    ours = D.AdamW(a, lr=0.01, weight_decay=0.3, weight_decay_mask="matrices")
    theirs = torch.optim.AdamW([{"params": [b[0]]}, {"params": [b[1]], "weight_decay": 0.0}], lr=0.01, weight_decay=0.3)
    for step in range(30):
        gs = grads_for(a, step)
        set_grads(a, gs)
        set_grads(b, gs)
        ours.step()
        theirs.step()
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)


def test_custom_mask_callable():
    a = params()
    opt = D.chain(a, [D.add_decayed_weights(1.0, mask=lambda p: p.dim() == 1), D.scale_by_learning_rate(1.0)])
    w0, b0 = a[0].detach().clone(), a[1].detach().clone()
    set_grads(a, [torch.zeros_like(p) for p in a])
    opt.step()
    assert torch.equal(a[0].detach(), w0)  # masked out: no decay
    assert torch.allclose(a[1].detach(), torch.zeros_like(b0))  # p - 1.0 * p


# -- torch.optim behaviour --------------------------------------------------------------------------------


def _roundtrip(sd):
    buf = io.BytesIO()
    torch.save(sd, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@pytest.mark.parametrize("make", [
    lambda ps: D.Adam(ps, lr=0.01, amsgrad=True),
    lambda ps: D.RMSprop(ps, lr=0.01, momentum=0.9, centered=True),
    lambda ps: D.SGD(ps, lr=cosine_annealing(0.1, 40), momentum=0.9, nesterov=True),
    lambda ps: D.chain(ps, [D.accumulate(3), D.scale_by_adagrad(), D.scale_by_learning_rate(0.1)]),
], ids=["adam", "rmsprop", "sgd-schedule", "accumulate-adagrad"])
def test_state_dict_roundtrip_continues_identically(make):
    a = params()
    opt = make(a)
    for step in range(13):
        set_grads(a, grads_for(a, step))
        opt.step()
    saved_params = [x.detach().clone() for x in a]
    saved = _roundtrip(opt.state_dict())  # through a file, loadable with weights_only=True
    for step in range(13, 40):
        set_grads(a, grads_for(a, step))
        opt.step()
    expected = [x.detach().clone() for x in a]

    b = [torch.nn.Parameter(x.clone()) for x in saved_params]
    opt2 = make(b)
    opt2.load_state_dict(saved)
    for step in range(13, 40):
        set_grads(b, grads_for(b, step))
        opt2.step()
    for x, y in zip(b, expected):
        assert torch.equal(x.detach(), y), "resumed trajectory differs"


def test_reduce_on_plateau_state_travels_in_the_optimizer_state_dict():
    a = params()
    plateau = ReduceOnPlateau(0.1, factor=0.5, patience=1)
    opt = D.SGD(a, lr=plateau)
    for metric in [1.0, 1.0, 1.0, 1.0]:
        plateau.step(metric)
    lr_before = plateau(0)
    assert lr_before < 0.1
    saved = _roundtrip(opt.state_dict())
    fresh = ReduceOnPlateau(0.1, factor=0.5, patience=1)
    opt2 = D.SGD(params(), lr=fresh)
    opt2.load_state_dict(saved)
    assert fresh(0) == lr_before
    assert opt2.param_groups[0]["lr"] == lr_before
    for m in [1.0, 1.0, 0.5, 0.5, 0.5]:
        assert fresh.step(m) == plateau.step(m)


def test_step_with_closure_returns_its_loss_and_reevaluates():
    w = torch.nn.Parameter(torch.tensor([2.0], dtype=torch.float64))
    opt = D.SGD([w], lr=0.1)
    calls = []

    def closure():
        opt.zero_grad()
        loss = (w**2).sum()
        loss.backward()
        calls.append(loss.item())
        return loss

    loss = opt.step(closure)
    assert loss.item() == 4.0 and calls == [4.0]
    assert w.item() == pytest.approx(2.0 - 0.1 * 4.0, rel=1e-15)


def test_zero_grad_sets_none_by_default():
    a = params()
    opt = D.Adam(a)
    set_grads(a, grads_for(a, 0))
    opt.zero_grad()
    assert all(p.grad is None for p in a)


def test_torch_lr_scheduler_drives_descend_like_torch():
    a, b = params(), params()
    ours, theirs = D.SGD(a, lr=0.1, momentum=0.9), torch.optim.SGD(b, lr=0.1, momentum=0.9)
    s1 = torch.optim.lr_scheduler.StepLR(ours, step_size=5, gamma=0.5)
    s2 = torch.optim.lr_scheduler.StepLR(theirs, step_size=5, gamma=0.5)
    for step in range(23):
        gs = grads_for(a, step)
        set_grads(a, gs)
        set_grads(b, gs)
        ours.step()
        theirs.step()
        s1.step()
        s2.step()
        assert ours.param_groups[0]["lr"] == theirs.param_groups[0]["lr"]
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-12)


def test_tensor_lr():
    a, b = params(), params()
    ours = D.Adam(a, lr=torch.tensor(0.01, dtype=torch.float64))
    theirs = torch.optim.Adam(b, lr=0.01)
    for step in range(10):
        gs = grads_for(a, step)
        set_grads(a, gs)
        set_grads(b, gs)
        ours.step()
        theirs.step()
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-12)


def test_works_in_a_plain_training_loop_on_a_module():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)).double()
    X = torch.randn(64, 3, dtype=torch.float64)
    y = X @ torch.tensor([[1.0], [-2.0], [0.5]], dtype=torch.float64)
    opt = D.Adam(model.parameters(), lr=0.01)
    first = None
    for _ in range(300):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(X), y)
        loss.backward()
        opt.step()
        first = first if first is not None else loss.item()
    assert loss.item() < 0.01 * first


# -- bad arguments ------------------------------------------------------------------------------------------

# Each pattern is anchored at the start (``^``) and names the transformation or class, the argument, the value
# and the valid range. Rows marked "torch's message" are raised by torch.optim.Optimizer.__init__, whose text
# descend does not control: they name the offending type, or (empty list) have no value to name.
LR_RANGE = r"expected a number >= 0, a 0-d tensor or a schedule \(callable step -> lr\)$"
NESTEROV = r"Nesterov momentum requires momentum > 0 and dampening = 0$"
BAD = [
    (lambda ps: D.SGD(ps, lr=-0.1), ValueError, r"^SGD: invalid lr=-0\.1; " + LR_RANGE),
    (lambda ps: D.Adam(ps, lr=float("nan")), ValueError, r"^Adam: invalid lr=nan; " + LR_RANGE),
    (lambda ps: D.Adam(ps, lr="fast"), TypeError, r"^Adam: invalid lr='fast' \(str\); " + LR_RANGE),
    (lambda ps: D.Adam(ps, betas=(1.0, 0.999)), ValueError, r"^Adam: invalid betas\[0\]=1\.0; expected a number in \[0, 1\)$"),
    (lambda ps: D.Adam(ps, betas=(0.9, -0.1)), ValueError, r"^Adam: invalid betas\[1\]=-0\.1; expected a number in \[0, 1\)$"),
    (lambda ps: D.Adam(ps, betas=(0.9,)), ValueError, r"^Adam: invalid betas=\(0\.9,\); expected a pair \(beta1, beta2\)$"),
    (lambda ps: D.Adam(ps, eps=-1e-8), ValueError, r"^Adam: invalid eps=-1e-08; expected a number >= 0$"),
    (lambda ps: D.Adam(ps, amsgrad="yes"), TypeError, r"^Adam: invalid amsgrad='yes' \(str\); expected True or False$"),
    (lambda ps: D.AdamW(ps, weight_decay=-0.01), ValueError, r"^AdamW: invalid weight_decay=-0\.01; expected a number >= 0$"),
    (lambda ps: D.SGD(ps, lr=0.1, nesterov=True), ValueError,
     r"^SGD: invalid nesterov=True with momentum=0\.0 and dampening=0\.0; " + NESTEROV),
    (lambda ps: D.SGD(ps, lr=0.1, momentum=0.9, dampening=0.5, nesterov=True), ValueError,
     r"^SGD: invalid nesterov=True with momentum=0\.9 and dampening=0\.5; " + NESTEROV),
    (lambda ps: D.SGD(ps, lr=0.1, momentum=1.0), ValueError, r"^SGD: invalid momentum=1\.0; expected a number in \[0, 1\)$"),
    (lambda ps: D.SGD(ps, lr=0.1, momentum=0.5, dampening=1.5), ValueError, r"^SGD: invalid dampening=1\.5; expected a number in \[0, 1\]$"),
    (lambda ps: D.Adagrad(ps, lr_decay=-1.0), ValueError, r"^Adagrad: invalid lr_decay=-1\.0; expected a number >= 0$"),
    (lambda ps: D.Adagrad(ps, initial_accumulator_value=-0.1), ValueError,
     r"^Adagrad: invalid initial_accumulator_value=-0\.1; expected a number >= 0$"),
    (lambda ps: D.RMSprop(ps, alpha=1.5), ValueError, r"^RMSprop: invalid alpha=1\.5; expected a number in \[0, 1\]$"),
    (lambda ps: D.RMSprop(ps, centered=1), TypeError, r"^RMSprop: invalid centered=1 \(int\); expected True or False$"),
    (lambda ps: D.SGD([{"params": ps[:1], "lr": -1.0}, {"params": ps[1:]}], lr=0.1), ValueError,
     r"^SGD: invalid lr=-1\.0; " + LR_RANGE),
    # torch's message; it names the type given.
    (lambda ps: D.SGD(ps[0], lr=0.1), TypeError,
     r"^params argument given to the optimizer should be an iterable of Tensors or dicts, but got torch\.DoubleTensor$"),
    (lambda ps: D.SGD([torch.zeros(2, dtype=torch.int64)], lr=0.1), TypeError,
     r"^SGD: invalid parameter of dtype torch\.int64; expected floating-point tensors$"),
    (lambda ps: D.SGD([torch.zeros(2, dtype=torch.complex64)], lr=0.1), TypeError,
     r"^SGD: complex parameters are not supported \(got dtype torch\.complex64\)$"),
    # torch's message; it names the type given.
    (lambda ps: D.SGD(["w"], lr=0.1), TypeError, r"^optimizer can only optimize Tensors, but one of the params is str$"),
    # torch's message; an empty list has no offending value to name.
    (lambda ps: D.SGD([], lr=0.1), ValueError, r"^optimizer got an empty parameter list$"),
    (lambda ps: D.chain(ps, [D.scale_by_adam(), D.accumulate(2)]), ValueError,
     r"^chain: accumulate must come before every per-parameter transformation, because it may skip a step"),
    # A chain the user composed names the rule whose argument is wrong.
    (lambda ps: D.chain(ps, [D.scale_by_adam(), D.scale_by_learning_rate(-1.0)]), ValueError,
     r"^scale_by_learning_rate: invalid lr=-1\.0; " + LR_RANGE),
    (lambda ps: D.chain(ps, ["adam"]), TypeError, r"^chain: invalid transform 'adam' \(str\); expected a Transform$"),
    (lambda ps: D.chain(ps, [D.scale_by_rms(eps=1e-8), D.scale_by_adam(eps=1e-6)]), ValueError,
     r"^chain: two transformations set 'eps' to different defaults \(1e-08 and 1e-06\); pass eps=\.\.\. to choose one$"),
    (lambda ps: D.accumulate(0), ValueError, r"^accumulate: invalid k=0; expected an int >= 1$"),
    (lambda ps: D.accumulate(2.5), TypeError, r"^accumulate: invalid k=2\.5 \(float\); expected an int$"),
    (lambda ps: D.clip_by_global_norm(0.0), ValueError, r"^clip_by_global_norm: invalid max_norm=0\.0; expected a number > 0$"),
    (lambda ps: D.clip_by_value(-1.0), ValueError, r"^clip_by_value: invalid clip_value=-1\.0; expected a number > 0$"),
    (lambda ps: D.add_decayed_weights(0.1, mask="biases"), ValueError,
     r"^add_decayed_weights: invalid mask='biases'; expected None, 'matrices' or a callable param -> bool$"),
    (lambda ps: D.Adam(ps, compile="fast"), ValueError, r"^Adam: invalid compile='fast'; expected True, False or 'auto'$"),
]


@pytest.mark.parametrize(("make", "exc", "match"), BAD, ids=[f"bad-{i}" for i in range(len(BAD))])
def test_bad_arguments(make, exc, match):
    with pytest.raises(exc, match=match):
        make(params())


def test_sparse_gradient_is_refused():
    emb = torch.nn.Embedding(5, 2, sparse=True)
    opt = D.SGD(emb.parameters(), lr=0.1)
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(TypeError, match="sparse gradients are not supported"):
        opt.step()
