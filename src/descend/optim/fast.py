"""The fast path: the same per-parameter rules, run over fewer, larger tensors and, where it pays, compiled.

The readable path runs each rule as a few tensor operations per parameter. That costs two things: passes over
memory (one per operation) and dispatches (a few microseconds of Python and torch per operation, per parameter).
The fast path removes what dominates:

- *Flat buckets.* Small parameters of one group (fewer than ``FLAT_MAX`` entries, same dtype, device, active
  rules and step) share one contiguous buffer per state key; their state tensors in ``optimizer.state`` are views
  into it. Each step the gradients and parameters are copied into two persistent flat buffers of the bucket
  (``torch._foreach_copy_``), the rule runs once over the bucket, and the new values are copied back: a dozen
  dispatches for the bucket instead of a dozen per parameter. The user's parameters are never re-pointed.
- *Compiled rules.* Through ``torch.compile`` a chain becomes one loop per tensor that reads ``g``, ``p`` and the
  state once and writes them once. A call through dynamo costs tens of microseconds of frame evaluation and guards
  whatever its size, so once a graph is compiled it is called directly (:class:`_Direct`: inductor's compiled
  function, its inputs taken from the chunk's tensors), and large parameters are compiled in chunks of ``CHUNK``
  tensors (one call per chunk, a Python loop over the chunk unrolled into the graph); a compiled bucket is a
  chunk of one. Shapes are dynamic, so
  parameters of any sizes share one graph per chunk length: a run of ``n`` large parameters needs the graph of
  ``CHUNK`` and, for the remainder, one more. Equally sized parameters (a model's repeated layers) first fill
  *uniform* chunks, compiled apart with one size symbol for the whole chunk: one size read per chunk instead of
  one per tensor (1-19% of a step on 100 tensors of 100k entries, median 3%, since chunks are called directly).
  The number of graphs per optimizer is capped below dynamo's
  recompile limit (``MAX_GRAPHS``); a configuration past the cap, or one that recompiles, runs the readable path
  instead of thrashing. The compiling call sees each tensor as a 1-D alias of its memory (not a view, whose
  base's shape dynamo would guard; direct calls take the gradients as views), and the parameters' version
  counters move on as after an in-place update.
- *Flat step counts.* The parameters of a bucket or of a run of chunks step together, so their ``state["step"]``
  tensors are 0-d views into one buffer, counted with one ``add_``; each stays a tensor of its own in
  ``optimizer.state``, saved and loaded as torch.optim's are.

Nothing here restates an update rule: a bucket runs the readable path itself on its flat tensors, and the
compiled function calls the very ``apply`` methods of the readable path. Non-contiguous tensors run the readable
path. Compiled, hyperparameters and step-dependent numbers (bias corrections, the learning rate) enter as 0-d
tensors, so changing the learning rate, or a schedule, never triggers a recompile. Tests hold this path to the readable one
(``tests/test_optim_fast.py``); the numbers behind the thresholds are in ``benchmarks/optim_step.py``.
"""

from __future__ import annotations

import functools
import operator
import shutil
import types
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.fx.experimental._config as fx_config
from torch import Tensor

from descend.optim.base import GlobalTransform, Transform
from descend.optim.transforms import PerParam

__all__ = ["CHUNK", "COMPILE_MIN_NUMEL", "COMPILE_MIN_WORK", "FLAT_MAX", "MAX_GRAPHS", "FastRules", "compile_own", "compiler_available",
           "worth_compiling"]

#: Parameters with fewer entries than this are flattened into their group's bucket. Below it a parameter's
#: dispatches cost more than gathering it (a copy of ``g`` and ``p`` in, of ``p`` out); above it the extra
#: passes over memory cost more than the dispatches they save.
FLAT_MAX = 2**16

#: Under ``compile="auto"`` the rules are compiled when the parameters total at least this many entries. The
#: compile costs 1-11 s once on a cold cache (more with more tensors: a chunk of 16 and its remainder take ~10 s),
#: well under 1 s on a warm one; on 10M parameters it saves tens of ms a step, on a small model ~0.1 ms, which a
#: short fit never earns back.
COMPILE_MIN_NUMEL = 2**20

#: When the optimizer knows how many updates it will make (``fit`` tells it: :meth:`ChainOptimizer.plan`), the
#: rules compile when parameters x updates reach this many entry-updates instead. A compiled update saves about
#: 1.4 ns per entry over the eager one (a 932k-parameter MLP's Adam step: 2.0 ms eager, 0.67 ms compiled) and the
#: compile costs 1-11 s once, so it pays after some 1-8e9 entry-updates: about 4,600 updates of that MLP, 430 of
#: 10M parameters. Decided from the plan and the sizes, never from timings, so a seeded run takes the same path on
#: any machine.
COMPILE_MIN_WORK = 2**32

#: Large parameters per compiled call. Each call costs ~30 µs plus a few µs per tensor; each tensor of the chunk
#: adds ~0.5 s to the one-off compile. Adam on 100 tensors of 100k: 8 per call 1.47x fused's step time (6.5 s to
#: compile), 16 1.40x (11 s), 32 1.33x (20 s); see ``docs/benchmarks.md``.
CHUNK = 16

#: At most this many compiled graphs per optimizer (chunk lengths × rule configurations), and always fewer than
#: dynamo's recompile limit: past it dynamo would silently stop compiling.
MAX_GRAPHS = 6


@functools.cache
def compiler_available() -> bool:
    """True when torch.compile can build CPU kernels here (it needs a C++ compiler)."""
    return shutil.which("g++") is not None or shutil.which("c++") is not None or shutil.which("clang++") is not None


def worth_compiling(param_groups: list[dict[str, Any]], planned: int | None = None) -> bool:
    """True when compiling the rules pays: the parameters total at least ``COMPILE_MIN_NUMEL`` entries or, with
    the number of ``planned`` updates known, parameters x updates reach ``COMPILE_MIN_WORK``.

    Example:
        >>> groups = [{"params": [torch.zeros(1000, 932)]}]  # 932k entries: under COMPILE_MIN_NUMEL
        >>> worth_compiling(groups), worth_compiling(groups, 1_000)
        (False, False)
    """
    total = sum(p.numel() for g in param_groups for p in g["params"])
    enough = total >= COMPILE_MIN_NUMEL if planned is None else total * planned >= COMPILE_MIN_WORK
    return enough and compiler_available()


def compile_own(fn: Callable[..., Any], *, dynamic: bool | None, tensor_guards: bool = True,
                capture: list[tuple[Any, list[str], list[Any]]] | None = None) -> tuple[types.CodeType, Callable[..., Any]]:
    """``torch.compile(fn)`` on a fresh copy of its code object, and that code object (to count its graphs).

    torch.compile keeps graphs, and counts them against its recompile limit, per code object; a copy gives
    this caller a cache of its own, which no other optimizer, fit or layout is ever served and none exhausts.
    With ``tensor_guards`` the graphs' guards check only the tensors (dtype, device, sizes, strides), for callers
    that fix everything else a graph depends on themselves (one compiled copy per signature or layout), and the
    generated wrapper leaves out its size asserts. ``capture`` (``tensor_guards`` then does not apply) receives,
    for each graph compiled, inductor's compiled function, the expression dynamo read each of its inputs from,
    and the inputs of the call that compiled it, for a caller that calls the graph itself once compiled (see
    :class:`_Direct`): dynamo's guards then run on the compiling call alone, so they keep torch's defaults (the
    generated wrapper still leaves out its size asserts, which every direct call would run).
    """
    code = fn.__code__.replace()
    fresh = types.FunctionType(code, fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)
    if capture is not None:  # inductor's option (its size asserts would run on every direct call: 3 per input)
        return code, torch.compile(fresh, fullgraph=True, dynamic=dynamic, backend=_capturing(capture),
                                   options={"size_asserts": False})
    if not tensor_guards:
        return code, torch.compile(fresh, dynamic=dynamic)
    options: dict[str, Any] = {"guard_filter_fn": torch.compiler.keep_tensor_guards_unsafe, "size_asserts": False}
    return code, torch.compile(fresh, fullgraph=True, dynamic=dynamic, options=options)


def _capturing(into: list[tuple[Any, list[str], list[Any]]]) -> Callable[..., Any]:
    """A torch.compile backend: inductor, keeping what it compiled and where each input of the graph came from."""

    def backend(gm: torch.fx.GraphModule, example_inputs: list[Any], options: dict[str, Any] | None = None) -> Any:
        from torch._inductor.compile_fx import compile_fx

        compiled = compile_fx(gm, example_inputs, config_patches=dict(options or {}))
        sources = []
        for node in gm.graph.find_nodes(op="placeholder"):
            arg = node.meta.get("grapharg")
            name = getattr(getattr(arg, "source", None), "name", None)
            sources.append(name() if callable(name) else str(name))
        into.append((compiled, sources, list(example_inputs)))
        return compiled

    return backend


class _Direct:
    """One compiled chunk graph, called without dynamo: inductor's compiled function on the chunk's tensors.

    Through ``torch.compile`` each call of a chunk first runs dynamo's frame evaluation and guards (about 50 µs,
    whatever the chunk's size); the chunk's signature already fixes everything the graph depends on but the
    tensors, and :class:`FastRules` hands it 1-D contiguous tensors of the dtype and device it names, equally sized
    in a uniform chunk. So once dynamo has compiled the graph, its inputs are taken straight from the call's
    arguments: each input tensor is the argument it was at the compiling call (matched by identity), each size
    input the length of the tensor dynamo read it from. A graph that did anything but update tensors in place (a
    rule that created state during the step, which dynamo replays after the graph) or whose inputs cannot be
    matched is not called this way (``make`` returns None).
    """

    def __init__(self, compiled: Any, take: list[int], sizes: list[int]) -> None:
        # Each input is an item of the call's tensors followed by the sizes it needs (``sizes``: of which tensor).
        self.compiled, self.sizes = compiled, sizes
        self.pick = _getter(take)

    @staticmethod
    def flat(gs: Sequence[Tensor], ps: list[Tensor], states: list[dict[str, Tensor]],
             scalars: tuple[dict[str, Any], ...]) -> list[Any]:
        """The call's tensors in one list, in a fixed order (the signature fixes the state and scalar keys): the
        parameters and their state (``held``: the same from step to step), the gradients, the scalars."""
        return [*_Direct.held(ps, states), *gs, *_Direct.numbers(scalars)]

    @staticmethod
    def held(ps: list[Tensor], states: list[dict[str, Tensor]]) -> list[Tensor]:
        return [*ps, *[v for st in states for v in st.values()]]

    @staticmethod
    def numbers(scalars: tuple[dict[str, Any], ...]) -> list[Tensor]:
        return [v for sc in scalars for v in sc.values() if isinstance(v, Tensor)]

    @classmethod
    def make(cls, captured: tuple[Any, list[str], list[Any]], tensors: list[Any]) -> _Direct | None:
        compiled, sources, examples = captured
        where = {id(t): i for i, t in enumerate(tensors)}
        if len(where) != len(tensors) or len(sources) != len(examples):
            return None
        by_name = {name: where[id(x)] for name, x in zip(sources, examples) if isinstance(x, Tensor) and id(x) in where}
        take: list[int] = []
        sizes: list[int] = []
        for name, example in zip(sources, examples):
            if isinstance(example, Tensor):
                if id(example) not in where:
                    return None
                take.append(where[id(example)])
                continue
            # a size input: "<the expression of a tensor input>.size()[0]"
            i = by_name.get(name[: -len(".size()[0]")], -1) if name.endswith(".size()[0]") else -1
            if i < 0 or tensors[i].dim() != 1 or tensors[i].size(0) != example:
                return None
            take.append(len(tensors) + len(sizes))
            sizes.append(i)
        return cls(compiled, take, sizes)

    def __call__(self, tensors: list[Any]) -> None:
        for i in self.sizes:
            tensors.append(tensors[i].size(0))
        self.compiled(*self.pick(tensors))


def _apply_rules(rules: tuple[PerParam, ...], g: Tensor, p: Tensor, state: dict[str, Tensor],
                 scalars: tuple[dict[str, Any], ...]) -> None:
    for rule, s in zip(rules, scalars):
        g = rule.apply(g, p, state, s)
    p.add_(g)


def _apply_chunk(rules: tuple[PerParam, ...], gs: list[Tensor], ps: list[Tensor], states: list[dict[str, Tensor]],
                 scalars: tuple[dict[str, Any], ...]) -> None:
    for g, p, state in zip(gs, ps, states):
        _apply_rules(rules, g, p, state, scalars)


class _Compiled:
    """``_apply_chunk`` compiled once per chunk *signature*, with a cap on the graphs that may exist.

    A chunk's signature (its length, rules, state keys, dtype, device, flags and which tensors hold fewer than 2
    entries) names the graph it needs. Each signature gets a function of its own (a fresh code object: dynamo
    caches graphs per code object), so its guards need only check the tensors (dtype, device, sizes, strides):
    everything else the graph depends on is fixed by the signature, and checking it on every call (the rules,
    the state's keys, the scalars' structure) cost more than the kernels of a small chunk. A new signature
    compiles while fewer than ``cap`` exist; one that finds no room, or whose call recompiled, is refused from
    then on (``False``: the caller runs the readable path).
    """

    def __init__(self, *, duck: bool = False) -> None:
        self.duck = duck
        config = torch._dynamo.config
        limit = int(getattr(config, "recompile_limit", getattr(config, "cache_size_limit", 8)))
        self.cap = max(0, min(MAX_GRAPHS, limit - 2))
        self.known: dict[Hashable, bool] = {}
        self._fns: dict[Hashable, tuple[Any, Any]] = {}  # signature -> (code object, compiled function)
        self._direct: dict[Hashable, _Direct] = {}  # signature -> its graph, called without dynamo
        self._captured: dict[Hashable, list[Any]] = {}  # signature -> what its backend captures (emptied)

    def graphs(self) -> int:
        """The number of graphs dynamo holds for this optimizer's chunks."""
        return sum(len(torch._dynamo.eval_frame._debug_get_cache_entry_list(code)) for code, _ in self._fns.values())

    def __call__(self, signature: Hashable, rules: tuple[PerParam, ...], gs: list[Tensor], ps: list[Tensor],
                 states: list[dict[str, Tensor]], scalars: tuple[dict[str, Any], ...]) -> bool:
        direct = self._direct.get(signature)
        if direct is not None:
            direct(_Direct.flat(gs, ps, states, scalars))
            return True
        seen = self.known.get(signature)
        if seen is False:
            return False
        if seen is None:
            if len(self._fns) >= self.cap:
                self.known[signature] = False
                return False
            captured: list[tuple[Any, list[str], list[Any]]] = []
            self._captured[signature] = captured
            code, fn = compile_own(_apply_chunk, dynamic=True, capture=captured)
            self._fns[signature] = (code, fn)
            tensors = _Direct.flat(gs, ps, states, scalars)
            before = [dict(st) for st in states]
            # Without duck shaping every tensor's size is a symbol of its own: one graph serves chunks of any
            # sizes. With it (``duck``, for chunks of equally sized tensors) the chunk has one size symbol,
            # which saves reading and checking a size per tensor on every call.
            with fx_config.patch(use_duck_shape=self.duck):  # type: ignore[attr-defined]
                fn(rules, gs, ps, states, scalars)
            self.known[signature] = True
            pure = all(st.keys() == b.keys() and all(st[k] is v for k, v in b.items()) for st, b in zip(states, before))
            made = _Direct.make(captured[0], tensors) if pure and len(captured) == 1 else None
            if made is not None:
                self._direct[signature] = made
            captured.clear()  # the compiling call's tensors (a step's gradients among them) are not kept
            return True
        code, fn = self._fns[signature]
        fn(rules, gs, ps, states, scalars)
        if len(torch._dynamo.eval_frame._debug_get_cache_entry_list(code)) > 1:  # it recompiled: stop using it
            self.known[signature] = False
            self._captured[signature].clear()
        return True

    def direct(self, signature: Hashable) -> _Direct | None:
        """The signature's graph, to call without dynamo, once it is compiled (None before, or if it cannot be)."""
        return self._direct.get(signature)


class _Bucket:
    """Flat state of a bucket of parameters: one buffer per state key, each parameter's state a view into it."""

    def __init__(self, keys: tuple[str, ...], params: list[Tensor], states: list[dict[str, Any]]) -> None:
        self.keys = keys
        self.sizes = [p.numel() for p in params]
        self.buffers: dict[str, Tensor] = {k: torch.cat([st[k].reshape(-1) for st in states]) for k in keys}
        self.views: list[dict[str, Tensor]] = [{} for _ in params]
        for k in keys:
            self._point(k, params, states)
        # The gathered parameters and gradients: filled each step, written back to the parameters after it.
        self.p = torch.empty(sum(self.sizes), dtype=params[0].dtype, device=params[0].device)
        self.g = torch.empty_like(self.p)
        self.p_views = [part.view(p.shape) for p, part in zip(params, self.p.split(self.sizes))]
        self.g_views = [part.view(p.shape) for p, part in zip(params, self.g.split(self.sizes))]

    def _point(self, key: str, params: list[Tensor], states: list[dict[str, Any]]) -> None:
        for p, st, views, part in zip(params, states, self.views, self.buffers[key].split(self.sizes)):
            views[key] = st[key] = part.view(p.shape)

    def holds(self, states: list[dict[str, Any]]) -> bool:
        """True when every parameter's state is still the views of this bucket (nothing replaced or loaded)."""
        return all(st.get(k) is v for st, views in zip(states, self.views) for k, v in views.items())

    def adopt(self, flat: dict[str, Any], params: list[Tensor], states: list[dict[str, Any]]) -> None:
        """Take in buffers the rule created or replaced during the step (e.g. a momentum buffer made lazily)."""
        for k, v in flat.items():
            if k != "step" and isinstance(v, Tensor) and self.buffers.get(k) is not v:
                self.buffers[k] = v
                self.keys = (*self.keys, k) if k not in self.keys else self.keys
                self._point(k, params, states)


@dataclass
class _Chunk:
    """One compiled call's arguments that last from step to step (the gradients are gathered at each step)."""

    part: list[int]  # the parameters, as positions in the step's lists
    params: list[Tensor]
    uniform: bool  # equally sized tensors: compiled with one size symbol for the whole chunk
    p_flat: list[Tensor]
    state_flat: list[dict[str, Tensor]]
    keys: int  # the number of state tensors per parameter when the chunk was made
    signature: tuple[Any, ...]  # the graph's signature, less the rules' flags (which may change between steps)
    grads: Callable[[list[Tensor]], Any]  # the chunk's gradients among the step's
    held: list[Tensor]  # ``_Direct.held`` of the chunk's aliases


class _Run:
    """Large parameters that share group, active rules, state keys, dtype, device and step: chunked together.

    Holds each chunk's arguments (the flat views of ``p`` and of each state tensor, the graph's signature), made
    once per plan; ``holds`` says whether the state still is the tensors they view.
    """

    def __init__(self, group: dict[str, Any], rules: tuple[PerParam, ...], members: list[int],
                 params: list[Tensor], states: list[dict[str, Any]], chunk: int) -> None:
        self.group, self.rules, self.members = group, rules, members
        # The chunks, as positions in ``members``: full chunks of equally sized tensors first (``uniform``: one
        # size for the whole chunk), then the rest in order, ``chunk`` at a time.
        by_size: dict[int, list[int]] = {}
        for j, i in enumerate(members):
            by_size.setdefault(params[i].numel(), []).append(j)
        self.chunks: list[tuple[list[int], bool]] = []
        rest: list[int] = []
        for positions in by_size.values():
            full = len(positions) - len(positions) % chunk
            self.chunks += [(positions[lo:lo + chunk], True) for lo in range(0, full, chunk)]
            rest += positions[full:]
        rest.sort()
        self.chunks += [(rest[lo:lo + chunk], False) for lo in range(0, len(rest), chunk)]
        self.point(params, states)

    def point(self, params: list[Tensor], states: list[dict[str, Any]]) -> None:
        self.tensors = [{k: v for k, v in states[i].items() if k != "step" and isinstance(v, Tensor)}
                        for i in self.members]
        # For ``holds``: which parameter's state each state tensor is, under which key.
        owners = [i for i, t in zip(self.members, self.tensors) for _ in t]
        self._owners = _getter(owners)
        self._keys = [k for t in self.tensors for k in t]
        self._values = [v for t in self.tensors for v in t.values()]
        p_flat = [_flat(params[i]) for i in self.members]
        # Dynamo specialises sizes 0 and 1: such a tensor needs a graph of its own, so the signature says so.
        tiny = [params[i].numel() < 2 for i in self.members]
        state_flat = [{k: _flat(v) for k, v in t.items()} for t in self.tensors]
        keys = tuple(state_flat[0])
        p0 = params[self.members[0]]
        self.prepared = [
            _Chunk(part=[self.members[j] for j in positions], params=[params[self.members[j]] for j in positions],
                   uniform=uniform, p_flat=[p_flat[j] for j in positions],
                   state_flat=[state_flat[j] for j in positions], keys=len(keys),
                   grads=_getter([self.members[j] for j in positions]),
                   held=_Direct.held([p_flat[j] for j in positions], [state_flat[j] for j in positions]),
                   signature=(len(positions), tuple(map(id, self.rules)), keys, p0.dtype, p0.device,
                              tuple(tiny[j] for j in positions)))
            for positions, uniform in self.chunks]

    def holds(self, states: list[dict[str, Any]]) -> bool:
        return all(map(operator.is_, map(dict.get, self._owners(states), self._keys), self._values))


class _StepCounts:
    """The step counts of parameters that step together (a bucket, a run of chunks) as 0-d views into one buffer.

    ``state["step"]`` stays a tensor of its own per parameter, as torch.optim keeps it (``state_dict`` saves and
    loads it as ever); counting a step for all of them is one ``add_`` on the buffer where a count per parameter
    costs a dispatch each (0.3-0.4 ms a step for 100 parameters). ``holds`` says whether the state still is the
    views (nothing replaced or loaded); counts that are not 0-d tensors of one dtype are never gathered.
    """

    def __init__(self, members: list[int], states: list[dict[str, Any]]) -> None:
        self.members = members
        self._owners = _getter(members)
        counts = [states[i]["step"] for i in members]
        self.views: list[Tensor] = []
        if all(isinstance(t, Tensor) and t.dim() == 0 for t in counts) and len({(t.dtype, t.device) for t in counts}) == 1:
            self.steps = torch.stack(counts)
            self.views = list(self.steps.unbind())
            for i, view in zip(members, self.views):
                states[i]["step"] = view

    def holds(self, states: list[dict[str, Any]]) -> bool:
        return bool(self.views) and all(map(operator.is_, map(_STEP, self._owners(states)), self.views))


class FastRules:
    """Runs the per-parameter rules of a chain in flat buckets and, with ``compile=True``, compiled."""

    def __init__(self, *, compile: bool, flat_max: int | None = None, chunk: int | None = None) -> None:
        self.compile = compile
        self.flat_max = FLAT_MAX if flat_max is None else flat_max
        self.chunk = CHUNK if chunk is None else chunk
        self._fn = _Compiled() if compile else None
        self._uniform = _Compiled(duck=True) if compile else None  # for chunks of equally sized tensors
        self._buckets: dict[tuple[Any, ...], _Bucket] = {}
        self._cached: tuple[Any, dict[tuple[Any, ...], list[int]], list[_Run], list[int], list[_StepCounts]] | None \
            = None

    def step(self, transforms: list[Transform], params: list[Tensor], grads: list[Tensor],
             states: list[dict[str, Any]], groups: list[dict[str, Any]], gstate: dict[str, Any]) -> None:
        """Count the step for every parameter (``state["step"] += 1``), then apply the rules."""
        from descend.optim.chain import _reference_step

        if any(isinstance(tr, GlobalTransform) for tr in transforms):
            # A global rule in the middle needs every update at once: keep the readable path.
            torch._foreach_add_([st["step"] for st in states], 1.0)
            _reference_step(transforms, params, grads, states, groups, gstate)
            return
        buckets, runs, alone, counters = self._plan(transforms, params, states, groups)
        loose = [states[i]["step"] for i in alone]
        for counter in counters:
            if counter.holds(states):
                counter.steps.add_(1.0)
            else:  # a step count was replaced (or loaded) since the plan: count it where it is now
                loose += [states[i]["step"] for i in counter.members]
        if loose:
            torch._foreach_add_(loose, 1.0)
        kept: dict[tuple[Any, ...], _Bucket] = {}
        for key, members in buckets.items():
            first = states[members[0]]
            self._run_bucket(key, int(first["step"]), transforms, [params[i] for i in members],
                             [grads[i] for i in members], [states[i] for i in members], groups[members[0]],
                             gstate, kept)
        self._buckets = kept
        if alone:  # not compiled, or not contiguous
            _reference_step(transforms, [params[i] for i in alone], [grads[i] for i in alone],
                            [states[i] for i in alone], [groups[i] for i in alone], gstate)
        for run in runs:
            self._run_chunks(run, params, grads, states, gstate)

    def _run_chunks(self, run: _Run, params: list[Tensor], grads: list[Tensor], states: list[dict[str, Any]],
                    gstate: dict[str, Any]) -> None:
        from descend.optim.chain import _reference_step

        assert self._fn is not None and self._uniform is not None
        if not run.holds(states):
            run.point(params, states)
        rules, group = run.rules, run.group
        p0 = params[run.members[0]]
        scalars = tuple(_as_tensors(tr.scalars(group, int(states[run.members[0]]["step"])), p0.dtype) for tr in rules)
        flags = tuple(v for s in scalars for v in s.values() if isinstance(v, bool))
        numbers = _Direct.numbers(scalars)
        adopted = False
        written: list[Tensor] = []
        for chunk in run.prepared:
            fn = self._uniform if chunk.uniform else self._fn
            signature = (*chunk.signature, flags)
            direct = fn.direct(signature)
            taken = chunk.grads(grads)
            if direct is not None and all(map(Tensor.is_contiguous, taken)):
                # Called without dynamo, the graph needs no alias without a base: a view is as good, and cheaper.
                direct([*chunk.held, *[g if g.dim() == 1 else g.view(-1) for g in taken], *numbers])
                written += chunk.params
                continue
            gs = _flat_all(taken)
            if gs is None or not fn(signature, rules, gs, chunk.p_flat, chunk.state_flat, scalars):
                _reference_step(list(rules), [params[i] for i in chunk.part], [grads[i] for i in chunk.part],
                                [states[i] for i in chunk.part], [group] * len(chunk.part), gstate, active=True)
                continue
            written += chunk.params
            if len(chunk.state_flat[0]) != chunk.keys:  # a rule created state during the step (a lazy buffer)
                for i, flat in zip(chunk.part, chunk.state_flat):
                    for k, v in flat.items():
                        if k not in states[i]:
                            states[i][k] = v.view(params[i].shape)
                            adopted = True
        # Written through aliases: tell autograd the parameters changed, as an in-place update would.
        torch.autograd.graph.increment_version(written)
        if adopted:
            run.point(params, states)

    def _plan(self, transforms: list[Transform], params: list[Tensor], states: list[dict[str, Any]],
              groups: list[dict[str, Any]]) -> tuple[dict[tuple[Any, ...], list[int]], list[_Run], list[int],
                                                     list[_StepCounts]]:
        """Which parameters share a bucket, which run in compiled chunks, and which run alone (readable).

        Members of a bucket, and of a run of chunks, share group, active rules, state keys, dtype, device and
        step count. The plan is kept while the parameters with a gradient, the groups' settings and the state
        keys stay the same (then every step count moved on by one together); ``forget`` drops it.
        """
        distinct = {id(g): g for g in groups}.values()  # in order: a group's parameters come one after the other
        signature = (tuple(map(id, params)),
                     tuple(tuple((k, v) for k, v in g.items() if k not in ("params", "lr")) for g in distinct),
                     tuple(map(len, states)))
        if self._cached is not None and self._cached[0] == signature:
            return self._cached[1], self._cached[2], self._cached[3], self._cached[4]
        buckets: dict[tuple[Any, ...], list[int]] = {}
        large: dict[tuple[Any, ...], list[int]] = {}
        alone: list[int] = []
        for i, (p, state, group) in enumerate(zip(params, states, groups)):
            rules = tuple(tr for tr in transforms if isinstance(tr, PerParam) and tr.active(group, p))
            keys = tuple(k for tr in rules for k in tr.state_names if k in state)
            key = (id(group), tuple(map(id, rules)), keys, p.dtype, p.device, int(state["step"]))
            tensors = [p, *(v for k, v in state.items() if k != "step" and isinstance(v, Tensor))]
            if p.numel() < self.flat_max:
                buckets.setdefault(key, []).append(i)
            elif self._fn is not None and p.numel() > 0 and all(t.is_contiguous() for t in tensors):
                large.setdefault(key, []).append(i)
            else:
                alone.append(i)
        # A bucket's flat state lives on from step to step: its name holds its members, not its step count.
        named = {(*key[:5], tuple(id(params[i]) for i in members)): members for key, members in buckets.items()}
        runs = [_Run(groups[members[0]], tuple(tr for tr in transforms if isinstance(tr, PerParam)
                                                and tr.active(groups[members[0]], params[members[0]])),
                     members, params, states, self.chunk)
                for members in large.values()]
        counters = [_StepCounts(members, states) for members in [*named.values(), *large.values()]]
        self._cached = (signature, named, runs, alone, counters)
        return named, runs, alone, counters

    def forget(self) -> None:
        """Drop the plan and the flat buckets (after a state was loaded: step counts may have changed)."""
        self._cached = None
        self._buckets = {}

    def _run_bucket(self, key: tuple[Any, ...], t: int, transforms: list[Transform], params: list[Tensor],
                    grads: list[Tensor], states: list[dict[str, Any]], group: dict[str, Any],
                    gstate: dict[str, Any], kept: dict[tuple[Any, ...], _Bucket]) -> None:
        from descend.optim.chain import _reference_step

        keys = key[2]
        bucket = self._buckets.get(key)
        if bucket is None or not bucket.holds(states):
            if not all(st[k].dtype == p.dtype and st[k].device == p.device and st[k].numel() == p.numel()
                       for p, st in zip(params, states) for k in keys):
                _reference_step(transforms, params, grads, states, [group] * len(params), gstate)
                return
            bucket = _Bucket(keys, params, states)
        kept[key] = bucket
        torch._foreach_copy_(bucket.p_views, params)
        torch._foreach_copy_(bucket.g_views, grads)
        flat_p, flat_g = bucket.p, bucket.g
        flat: dict[str, Any] = dict(bucket.buffers)
        rules = tuple(tr for tr in transforms if isinstance(tr, PerParam) and tr.active(group, params[0]))
        compiled = False
        if self._fn is not None:
            scalars = tuple(_as_tensors(tr.scalars(group, t), flat_p.dtype) for tr in rules)
            flags = tuple(v for s in scalars for v in s.values() if isinstance(v, bool))
            signature = (1, tuple(map(id, rules)), tuple(flat), flat_p.dtype, flat_p.device, flags,
                         (flat_p.numel() < 2,))
            compiled = self._fn(signature, rules, [flat_g], [flat_p], [flat], scalars)
        if not compiled:
            flat["step"] = t
            _reference_step(list(rules), [flat_p], [flat_g], [flat], [group], gstate, active=True)
        bucket.adopt(flat, params, states)
        torch._foreach_copy_(params, bucket.p_views)


def _flat_all(ts: list[Tensor]) -> list[Tensor] | None:
    """``_flat`` of each tensor, or None when one is not contiguous (the readable path takes those)."""
    if not all(map(Tensor.is_contiguous, ts)):
        return None
    return [t if t.dim() == 1 and t._base is None and not t.requires_grad else _flat(t) for t in ts]


_STEP = operator.itemgetter("step")


def _getter(indices: list[int]) -> Callable[[list[Any]], Any]:
    """The items at ``indices`` of a list, in one C call (``operator.itemgetter``), always as a sequence."""
    if len(indices) < 2:
        return lambda xs: tuple(xs[i] for i in indices)
    return operator.itemgetter(*indices)


def _flat(t: Tensor) -> Tensor:
    """Contiguous ``t`` as a 1-D tensor over the same memory, with no autograd base and no grad.

    Not ``t.view(-1)``: dynamo guards a view on the shape of its base, so views of bases of other shapes
    (a matrix, a vector) would each need a graph of their own.
    """
    if t.dim() == 1 and t._base is None and not t.requires_grad:
        return t
    return torch.empty(0, dtype=t.dtype, device=t.device).set_(t.untyped_storage(), t.storage_offset(), (t.numel(),),
                                                               (1,))


def _as_tensors(scalars: dict[str, Any], dtype: torch.dtype) -> dict[str, Any]:
    return {k: (v if isinstance(v, bool) else torch.as_tensor(v, dtype=dtype)) for k, v in scalars.items()}
