"""``fit(..., compile=True)``: a training step compiled with ``torch.compile``, for small models on a CPU.

For the models people train on a CPU (a few layers, thousands of parameters, batches of tens of rows) a step's
time is dispatch, not arithmetic: each of the forward's, the backward's and the optimizer's few dozen tensor
operations costs microseconds of Python and torch. Compiled, the whole step is one call into generated code:

- the forward and the loss (with the penalty, if any) are differentiated by ``torch.func.grad_and_value`` over
  the model's parameters (``torch.func.functional_call``), so the backward is compiled with them;
- with a descend optimizer made of per-parameter rules (SGD, momentum, Nesterov, AdaGrad, RMSprop, Adam, AdamW,
  clip by value, weight decay), its update is compiled into the same graph: the graph calls the rules' own
  ``apply`` methods, as the optimizer's fast path does (nothing restates an update rule). Any other optimizer
  (torch.optim's, or a descend chain with a rule over all gradients at once: clipping by the global norm,
  skipping non-finite steps, accumulation) steps on the compiled gradients; torch.optim's own optimizers run
  that step compiled too (``torch.compile`` of their ``step``, hooks eager around it), until an lr set to a new
  value recompiles it (torch guards on the number), after which their eager step serves.

What stays as it was: every parameter's ``.grad`` holds the step's gradient afterwards (callbacks read it), the
optimizer's state, step counts, learning-rate schedules and ``state_dict`` are the optimizer's own, and every
hook runs. A step that something must watch from inside runs eagerly instead: the first one (the optimizer
creates its state), any step while a hook is attached to a module (forward or backward: the diagnostics'
activation statistics, every 100 steps by default) or to a parameter's gradient, while a hook other than the
divergence guard's is registered on ``optimizer.step`` (with the update in the graph), a batch of another shape
than the first (an epoch's short last batch: no second compile), and a step whose gradient is not finite (the
graph leaves everything as it was, then the optimizer's step and its hooks, the divergence guard's among them,
decide as they always do). Steps also run eagerly while the optimizer lacks state its rules keep (after a
rollback to the state before the first step; a rule switched on mid-run, such as momentum from 0, on its first
use) and, for the rest of the run, once a parameter has been frozen or unfrozen (``requires_grad`` changed).

Limits, by design: the graph's guards check only tensors (shapes, dtypes), so the Python values the step reads
are those of the first call, for the whole fit: a module's attributes (a dropout's ``p``, ``training``), the
loss function's options and numbers in its closure, the penalty's ``l1`` and ``l2``. A run that changes such a
value mid-run (a callback annealing a loss weight kept as a float) should not compile, or keep it in a tensor.
A graph is kept per layout of the optimizer's param groups (the group objects themselves): a divergence-guard
rollback loads a saved optimizer state, whose groups are new objects, so the next step compiles again (under a
second with torch's cache warm); past ``_MAX_GRAPHS`` layouts the run goes on eagerly.

Numbers: a compiled step equals the eager one to rounding (the generated code contracts multiplications and
additions differently), not bit for bit; seeded compiled runs repeat exactly. Compiling costs seconds once per
process (less with torch's on-disk cache warm), so it pays on runs of thousands of steps; the figures are in
``docs/benchmarks.md`` (``benchmarks/fit_overhead.py``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules import module as _module
from torch.optim import optimizer as _optimizer

from descend.errors import ConfigError
from descend.optim.base import GlobalTransform
from descend.optim.chain import ChainOptimizer
from descend.optim.fast import compile_own, compiler_available
from descend.optim.transforms import PerParam
from descend.train.guard import DivergenceGuard
from descend.train.setup import Penalty

__all__ = ["AUTO_MIN_STEPS", "CompiledStep", "step_path"]

#: Graphs kept per step: one per layout of the optimizer's rules and settings (learning rates and step-dependent
#: numbers are inputs, not part of the layout). A run that keeps changing its settings goes back to eager steps.
_MAX_GRAPHS = 4

#: ``_plan``'s answer when a parameter lacks state its rules keep: run this step eagerly.
_INCOMPLETE = object()


def _watched(modules: Sequence[nn.Module], params: Sequence[Tensor]) -> bool:
    """Whether a hook would watch this step from inside: a module's forward or backward hook (global or its
    own), or a gradient hook on a parameter. Compiled, none of them would run, so such a step runs eagerly."""
    if (_module._global_forward_hooks or _module._global_forward_pre_hooks or _module._global_backward_hooks
            or _module._global_backward_pre_hooks):
        return True
    if any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks for m in modules):
        return True
    return any(p._backward_hooks or getattr(p, "_post_accumulate_grad_hooks", None) for p in params)


def _foreign_step_hooks(optimizer: torch.optim.Optimizer) -> bool:
    """Whether a hook other than the divergence guard's gradient check is registered on ``optimizer.step``. The
    graph applies the update itself, so it can stand in only for that check (a non-finite gradient moves nothing
    and the step is handed to the optimizer, hooks and all)."""
    if _optimizer._global_optimizer_pre_hooks or _optimizer._global_optimizer_post_hooks:
        return True
    if optimizer._optimizer_step_post_hooks:
        return True
    return not all(isinstance(getattr(h, "__self__", None), DivergenceGuard)
                   for h in optimizer._optimizer_step_pre_hooks.values())


def _fused_rules(optimizer: torch.optim.Optimizer) -> bool:
    """Whether the optimizer's update can run inside the compiled graph: a descend chain of per-parameter
    rules only, with fixed (not tensor) hyperparameters."""
    if not isinstance(optimizer, ChainOptimizer):
        return False
    if any(isinstance(tr, GlobalTransform) or not isinstance(tr, PerParam) for tr in optimizer.transforms):
        return False
    return not any(isinstance(v, Tensor) for g in optimizer.param_groups for k, v in g.items() if k != "params")


def _running_statistics(model: nn.Module) -> tuple[str, nn.Module] | None:
    """The first module that updates running statistics in its forward (batch norm), which a graph cannot."""
    for name, module in model.named_modules():
        if getattr(module, "track_running_stats", False) or isinstance(module, nn.modules.batchnorm._NormBase):
            return name, module
    return None


class CompiledStep:
    """One compiled training step of ``loss_fn(model(x), y) + penalty`` and the optimizer's update.

    ``usable(x, y)`` says whether this step may run compiled (see the module's notes for when it may not);
    calling it runs the step on ``(x, y)``, leaves the gradients in ``.grad`` and returns the loss, or None
    when it finds, after all, that this step must run eagerly (the loop then takes it as without compiling).
    ``step`` is the loop's way of calling ``optimizer.step()`` (used for the steps the graph hands back);
    ``rows`` the rows of a full batch (None: unknown, the first batch's), the only size the graph is compiled for.
    """

    def __init__(self, model: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor],
                 penalty: Callable[[], Tensor] | None,
                 optimizer: torch.optim.Optimizer, step: Callable[..., Any], rows: int | None = None) -> None:
        if not compiler_available():
            raise ConfigError("compile: torch.compile needs a C++ compiler (g++, c++ or clang++) on the PATH; "
                              "expected compile=False on this machine")  # fmt: skip
        found = _running_statistics(model)
        if found is not None:
            name, module = found
            raise ConfigError(
                f"compile: module {name or type(module).__name__!r} ({type(module).__name__}) updates running "
                "statistics during the forward, which the compiled step does not; expected compile=False "
                "for models with batch normalisation"
            )
        if penalty is not None and not isinstance(penalty, Penalty):
            raise ConfigError("compile: the penalty must be a descend.train.setup.Penalty (fit's l1, l2 and penalize), "
                              f"got {type(penalty).__name__}")  # fmt: skip
        self.model, self.loss_fn, self.optimizer, self.step = model, loss_fn, optimizer, step
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.names = [n for n, _ in named]
        self.params = [p for _, p in named]
        self.frozen = [p for p in model.parameters() if not p.requires_grad]
        self.modules = list(model.modules())
        index = {id(p): i for i, p in enumerate(self.params)}
        if penalty is not None and any(id(p) not in index for p in penalty.params):
            raise ConfigError("compile: the penalty covers parameters that are not trained; expected compile=False")
        self.penalized = [] if penalty is None else [index[id(p)] for p in penalty.params]
        self.penalty = penalty
        owned = {id(p) for g in optimizer.param_groups for p in g["params"]}
        # The update goes into the graph only when the optimizer holds every trained parameter (one it does
        # not hold keeps its gradient and is never moved, as without compiling: the optimizer's own step does that).
        self.fused = _fused_rules(optimizer) and all(id(p) in owned for p in self.params)
        # torch.compile does not write back in-place changes to a 0-d float64 tensor that does not require grad
        # (seen with torch 2.13): a 0-d float64 parameter's state would not move, so its update stays eager.
        self.fused = self.fused and not any(p.dim() == 0 and p.dtype == torch.float64 for p in self.params)
        self.shape: tuple[int, ...] | None = None  # the batch shape the graph is compiled for
        self.rows = rows
        self.enabled = True
        self._graph: Callable[..., Any] | None = None
        self._plans: dict[tuple[Any, ...], Any] = {}
        self._ran: set[int] = set()  # the graphs that compiled and ran
        self._torch_step = None if self.fused else _compiled_torch_step(optimizer)

    # -- when ----------------------------------------------------------------------------------------------

    def usable(self, x: Tensor, y: Tensor) -> bool:
        if not self.enabled or _watched(self.modules, self.params):
            return False
        # The graph differentiates the parameters trained when the fit began: one frozen or unfrozen since
        # (requires_grad changed) is left to eager steps, where autograd gives it a gradient or not.
        if not all(p.requires_grad for p in self.params) or any(p.requires_grad for p in self.frozen):
            return False
        if self.fused and _foreign_step_hooks(self.optimizer):
            return False
        if self.shape is None:
            if self.rows is not None and len(x) != self.rows:
                return False  # resumed at an epoch's short last batch: the next full one fixes the shape
            if not all(self.optimizer.state.get(p) for p in self.params):
                return False  # the first step runs eagerly: the optimizer makes its state
            self._probe(x, y)  # resumed: the optimizer has its state, so the step need not be eager
            return self.enabled and self.shape is not None
        return tuple(x.shape) == self.shape

    def eager_step_done(self, x: Tensor) -> None:
        """After an eager step: the first one on a full batch fixes the batch shape, and checks that every parameter got a
        gradient (``torch.func`` would give an unused parameter zeros, where autograd leaves ``None`` and the
        optimizer skips it; such models stay eager)."""
        if self.shape is None and self.enabled and (self.rows is None or len(x) == self.rows):
            if any(p.grad is None for p in self.params):
                self.enabled = False
                return
            self.shape = tuple(x.shape)

    def _probe(self, x: Tensor, y: Tensor) -> None:
        """The same check without a step (a resumed run): a forward and backward whose gradients are dropped,
        with the random state put back, so the run takes the steps an uninterrupted one takes."""
        with torch.random.fork_rng(devices=[]):
            for p in self.params:
                p.grad = None
            loss = self.loss_fn(self.model(x), y)
            (loss + self.penalty() if self.penalty is not None else loss).backward()
        self.eager_step_done(x)
        for p in self.params:
            p.grad = None

    # -- the step ------------------------------------------------------------------------------------------

    def __call__(self, x: Tensor, y: Tensor) -> Tensor | None:
        if not self.fused:
            if self._graph is None:
                def gradients(params: list[Tensor], x: Tensor, y: Tensor) -> tuple[Tensor, list[Tensor]]:
                    return self._gradients(params, x, y)

                self._graph = _graph(gradients)
            out = self._first_call(self._graph, (self.params, x, y))
            if out is None:
                return None
            loss, grads = out
            self._set_grads(grads)
            self._optimizer_step()
            return loss
        opt = self.optimizer
        assert isinstance(opt, ChainOptimizer)
        states = [opt.state[p] for p in self.params]
        if not all(states):  # rolled back to before the first step (the guard): the optimizer makes its state
            return None
        t = opt.updates
        opt.scheduled_lr(t)
        steps = [int(st["step"]) + 1 for st in states]
        plan = self._plan(opt, states, steps)
        if plan is None:  # settings keep changing: compiling each layout would cost more than it saves
            self.enabled = False
            return None
        if plan is _INCOMPLETE:
            return None
        graph, units, keys = plan
        values: list[float] = []
        for group, rep, rules in units:
            for tr in rules:
                values.extend(float(v) for v in tr.scalars(group, steps[rep]).values() if not isinstance(v, bool))
        tensors = [st[k] for st, ks in zip(states, keys) for k in ks]
        counts = [st["step"] for st in states]
        vec = torch.tensor(values, dtype=self.params[0].dtype)
        out = self._first_call(graph, (self.params, x, y, tensors, vec))
        if out is None:
            return None
        loss, grads, ok = out
        self._set_grads(grads)
        if not bool(ok):  # the graph changed nothing: the optimizer and its hooks take this step as usual
            self.step()
            return loss
        torch._foreach_add_(counts, 1.0)  # outside the graph: see the 0-d float64 note in __init__
        opt.count_update(t)
        return loss

    def _plan(self, opt: ChainOptimizer, states: list[dict[str, Any]], steps: list[int]) -> Any:
        """The compiled graph for this layout, the (group, step, rules) units whose numbers ``vec`` carries in
        order, and each parameter's state keys. The layout is which rules act on which parameter, their
        settings that are not numbers (flags such as ``nesterov``) and the state they keep; a new layout (a
        setting changed) is a new graph, up to ``_MAX_GRAPHS``."""
        groups = self._groups()
        names = [k for k in opt.defaults if k != "lr"]  # the rules' settings (not lr, nor what others keep there)
        settings = tuple(tuple(_hashable(g.get(k)) for k in names) for g in opt.param_groups)
        signature = (tuple(map(id, groups)), settings, tuple(steps[i] - steps[0] for i in range(len(steps))),
                     tuple(len(st) for st in states))
        cached = self._plans.get(signature)
        if cached is not None:
            return cached
        if len(self._plans) >= _MAX_GRAPHS:
            return None
        units: list[tuple[dict[str, Any], int, tuple[PerParam, ...]]] = []  # (group, a parameter's index, rules)
        unit_of: dict[tuple[int, int, tuple[PerParam, ...]], int] = {}
        unit_specs: list[tuple[Any, ...]] = []
        layout = []
        at = 0
        for i, (p, group, step) in enumerate(zip(self.params, groups, steps)):
            # The rules active for this parameter: a rule's mask (weight decay on matrices only) may choose
            # parameters within a group, so parameters share a unit only when the same rules act on them.
            rules = tuple(tr for tr in opt.transforms if isinstance(tr, PerParam) and tr.active(group, p))
            key = (id(group), step, rules)
            if key not in unit_of:
                specs = []
                for tr in rules:
                    spec: list[tuple[str, bool | int]] = []
                    for k, v in tr.scalars(group, step).items():
                        if isinstance(v, bool):
                            spec.append((k, v))
                        else:
                            spec.append((k, at))
                            at += 1
                    specs.append((tr, tuple(spec)))
                unit_of[key] = len(units)
                units.append((group, i, rules))
                unit_specs.append(tuple(specs))
            layout.append(unit_specs[unit_of[key]])
            # A rule switched on mid-run (momentum from 0) makes its state on first use, which the graph, working
            # on copies, would drop: that step runs eagerly (as it does, or fails, without compiling).
            if any(k not in states[i] for tr in rules for k in tr.init(p, group)):
                return _INCOMPLETE
        keys = [tuple(k for k, v in st.items() if k != "step" and isinstance(v, Tensor)) for st in states]
        plan = (self._fused_graph(tuple(zip(layout, keys))), units, keys)
        self._plans[signature] = plan
        return plan

    def _optimizer_step(self) -> None:
        """The optimizer's step on the compiled gradients: for torch.optim's own optimizers their step compiled
        too (torch supports compiling them), with the hooks run around it as the loop's step runs them. A
        recompile (an lr set to a new number each step, as a schedule does: torch guards on it) retires it and
        the eager step serves from then on."""
        if self._torch_step is None:
            self.step()
            return
        code, step = self._torch_step
        step()
        if len(torch._dynamo.eval_frame._debug_get_cache_entry_list(code)) > 1:
            self._torch_step = None

    def _first_call(self, graph: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        """``graph(*args)``; the first call of a graph compiles it, and if that fails (torch.compile cannot take
        every model: data-dependent Python control flow, unsupported operations), the run goes on eagerly with
        a warning saying why, instead of stopping. None then."""
        if id(graph) in self._ran:
            return graph(*args)
        try:
            out = graph(*args)
        except Exception as e:  # any failure to compile; an error of the model itself recurs in the eager step
            self.enabled = False
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            warnings.warn(f"compile: torch.compile could not compile this training step ({type(e).__name__}: "
                          f"{reason[:300]}); the run goes on with eager steps", RuntimeWarning, stacklevel=2)  # fmt: skip
            return None
        self._ran.add(id(graph))
        return out

    def _groups(self) -> list[dict[str, Any]]:
        owner = {id(p): g for g in self.optimizer.param_groups for p in g["params"]}
        return [owner[id(p)] for p in self.params]

    def _set_grads(self, grads: list[Tensor]) -> None:
        for p, g in zip(self.params, grads):
            p.grad = g

    # -- what is compiled ----------------------------------------------------------------------------------

    def _objective(self, tensors: list[Tensor], x: Tensor, y: Tensor) -> Tensor:
        out = torch.func.functional_call(self.model, dict(zip(self.names, tensors)), (x,))
        loss = self.loss_fn(out, y)
        if self.penalty is not None:
            loss = loss + self.penalty.over([tensors[i] for i in self.penalized])
        return loss

    def _gradients(self, params: list[Tensor], x: Tensor, y: Tensor) -> tuple[Tensor, list[Tensor]]:
        grads, loss = torch.func.grad_and_value(self._objective)([p.detach() for p in params], x, y)
        return loss.detach(), grads

    def _fused_graph(self, layout: tuple[Any, ...]) -> Callable[..., Any]:
        def fused_step(params: list[Tensor], x: Tensor, y: Tensor, tensors: list[Tensor],
                       vec: Tensor) -> tuple[Tensor, list[Tensor], Tensor]:
            loss, grads = self._gradients(params, x, y)
            ok = torch.stack([torch.isfinite(g).all() for g in grads]).all()
            at = 0
            with torch.no_grad():
                for p, g, (specs, keys) in zip(params, grads, layout):
                    state = dict(zip(keys, tensors[at:at + len(keys)]))
                    at += len(keys)
                    new_p = p.detach().clone()
                    new_state = {k: v.clone() for k, v in state.items()}
                    u = g
                    for rule, spec in specs:
                        u = rule.apply(u, new_p, new_state, {k: (j if isinstance(j, bool) else vec[j]) for k, j in spec})
                    new_p.add_(u)
                    p.copy_(torch.where(ok, new_p, p))  # a non-finite gradient moves nothing
                    for k, v in state.items():
                        v.copy_(torch.where(ok, new_state[k], v))
            return loss, grads, ok

        return _graph(fused_step)


def _graph(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` compiled for one layout and batch shape (``compile_own``'s tensor-only guards): the loop calls it
    only on batches of that shape, in training mode, and the layout, the model's code and the rules are fixed."""
    return compile_own(fn, dynamic=False)[1]


def _hashable(value: Any) -> Any:
    """A setting as part of a graph's signature: lists (``betas=[0.9, 0.99]`` is valid) as tuples."""
    return tuple(map(_hashable, value)) if isinstance(value, list) else value


def _compiled_torch_step(optimizer: torch.optim.Optimizer) -> tuple[Any, Callable[[], Any]] | None:
    """For one of torch.optim's own optimizers: (the code object, a step that runs its ``step`` compiled, hooks
    eager around it); None for any other optimizer, or one whose ``step`` was replaced on the instance."""
    func = getattr(type(optimizer).step, "__wrapped__", None)
    if (func is None or "step" in vars(optimizer) or isinstance(optimizer, ChainOptimizer)
            or not type(optimizer).__module__.startswith("torch.optim")):
        return None
    from descend.train.loop import plain_step

    # torch's own guards (its step reads the param groups' numbers): a code object of its own, as for the step's
    # graphs, so this optimizer's graphs are its own, under its own limit.
    code, compiled = compile_own(func, dynamic=None, tensor_guards=False)
    return code, plain_step(optimizer, compiled)


#: Planned steps from which ``fit`` compiles its step when not told (``compile=None``). On a CPU a compiled step of
#: a small model saves about 250 us (its time is dispatch, not arithmetic), and the compile costs 3-5 s in a fresh
#: process and 0.3-0.5 s in later fits (docs/benchmarks.md, "fit(compile=True)"): it pays after 12,000-20,000
#: steps. A rule on the plan and the model, not on timings, so a seeded run takes the same path on any machine.
AUTO_MIN_STEPS = 20_000


def step_path(requested: bool | None, *, planned: int, model: nn.Module, penalty: Penalty | None,
              closure: str | None, mixed: bool, distributed: bool, device: torch.device,
              checkpointing: bool) -> tuple[bool, str]:  # fmt: skip
    """Whether ``fit`` compiles its training step, and why, in words for the run record and the summary.

    ``requested`` is fit's ``compile``: True or False decide (True under autocast still runs eagerly: the compiled
    step is float32's); None compiles a long run (at least :data:`AUTO_MIN_STEPS` planned steps) on a CPU with a
    C++ compiler, of a first-order optimizer, in float32, in one process, without batch norm or activation
    checkpointing, and keeps every other run eager.

    Example:
        >>> import torch
        >>> step_path(None, planned=4_500, model=torch.nn.Linear(3, 1), penalty=None, closure=None, mixed=False,
        ...           distributed=False, device=torch.device("cpu"), checkpointing=False)
        (False, 'eager: 4,500 planned steps, under 20,000: a compile of seconds would not pay')
    """
    if requested is False:
        return False, "eager: compile=False"
    if mixed:
        return False, "eager: autocast runs eagerly (the compiled step is float32's)"
    if requested:
        return True, "compiled: compile=True"
    if closure is not None:
        why = "the optimizer re-evaluates the loss through a closure"
    elif distributed:
        why = "DistributedDataParallel steps eagerly"
    elif device.type != "cpu":
        why = f"the rule is measured on CPUs; compile=True compiles on {device.type} too"
    elif checkpointing:
        why = "activation checkpointing recomputes blocks eagerly"
    elif _running_statistics(model) is not None:
        why = "batch norm updates running statistics in the forward, which the compiled step does not"
    elif penalty is not None and any(not p.requires_grad for p in penalty.params):
        why = "the penalty covers parameters that are not trained"
    elif not compiler_available():
        why = "no C++ compiler for torch.compile here"
    elif planned < AUTO_MIN_STEPS:
        why = f"{planned:,} planned steps, under {AUTO_MIN_STEPS:,}: a compile of seconds would not pay"
    else:
        return True, f"compiled: {planned:,} planned steps, at least {AUTO_MIN_STEPS:,}: the compile pays"
    return False, f"eager: {why}"
