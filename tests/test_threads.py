"""fit(threads="auto"): the work of a step, counted against its closed form, decides the threads."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from descend.models import GPT, MLP
from descend.train.threads import STEP_FLOPS_FOR_THREADS, auto_threads, step_flops


def test_step_flops_of_a_linear_layer_is_its_closed_form() -> None:
    # forward: 2 * in * out per row (a multiply and an add per weight); the step: 3 forwards' worth, per row
    assert step_flops(nn.Linear(61, 10), torch.zeros(1, 61), 32) == 3 * 2 * 61 * 10 * 32


def test_the_count_leaves_the_model_as_it_was() -> None:
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Dropout(0.5)).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    example = torch.randn(1, 4)
    state = torch.random.get_rng_state()
    step_flops(model, example, 16)
    assert model.training and torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_a_small_mlp_gets_one_thread_and_the_character_lm_torchs_own() -> None:
    assert auto_threads(MLP(61, 10, hidden=(64,)), torch.zeros(1, 61), 32) == 1
    gpt = GPT(vocab=65, layers=4, heads=4, dim=128, block=64)  # 0.8M parameters, 3.7 GFLOP a step at batch 12
    assert sum(p.numel() for p in gpt.parameters()) < 2**20
    assert step_flops(gpt, torch.zeros(1, 64, dtype=torch.long), 12) > STEP_FLOPS_FOR_THREADS  # type: ignore[operator]
    assert auto_threads(gpt, torch.zeros(1, 64, dtype=torch.long), 12) is None


class _Uncountable(nn.Module):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(size))

    def forward(self, x: Tensor) -> Tensor:
        raise RuntimeError("needs a batch of two")


def test_a_model_the_counter_cannot_run_falls_back_on_its_size() -> None:
    assert step_flops(_Uncountable(3), torch.zeros(1, 3), 8) is None
    assert auto_threads(_Uncountable(3), torch.zeros(1, 3), 8) == 1
    assert auto_threads(_Uncountable(2**20), torch.zeros(1, 3), 8) is None


def test_the_line_falls_between_the_measured_sizes() -> None:
    """On a quiet machine (docs/benchmarks.md, "Torch threads") two threads are level at 15 MFLOP a step and faster
    from 20 MFLOP: an MLP 61-256-256-10 at batch 32 (15.1 MFLOP) keeps one thread, the 200,000-row benchmark's MLP
    50-256-256-10 at batch 256 (126 MFLOP, 1.36x faster on two) gets torch's own setting."""
    wide = MLP(61, 10, hidden=(256, 256))
    assert step_flops(wide, torch.zeros(1, 61), 32) < STEP_FLOPS_FOR_THREADS  # type: ignore[operator]
    assert auto_threads(wide, torch.zeros(1, 61), 32) == 1
    table = MLP(50, 10, hidden=(256, 256))
    assert step_flops(table, torch.zeros(1, 50), 256) == 3 * 2 * (50 * 256 + 256 * 256 + 256 * 10) * 256
    assert auto_threads(table, torch.zeros(1, 50), 256) is None
