"""A time budget trained to its end: the phase's length priced again from its own pace while it trains,
and the learning-rate schedule given that length (core/training/train.py)."""

import pytest
import torch
from transformers import get_scheduler

from core.training.train import steps_for_budget, stretch_schedule


def test_the_length_follows_the_measured_costs_within_the_planned_epochs():
    # 8 s a step, an evaluation of 20 s every 10 steps, a save of 10 s every 50: 10.2 s a step; 1,030 s left,
    # the last save (10 s) inside them: 100 more
    costs = {"step": (8.0, 1), "eval": (20.0, 10), "save": (10.0, 50)}
    assert steps_for_budget(20, costs, 1030.0, cap=1000) == 120
    assert steps_for_budget(20, costs, 1030.0, cap=50) == 50  # never past what the planned epochs hold
    assert steps_for_budget(20, costs, -5.0, cap=1000) == 21  # over budget: the step under way ends it
    unmeasured = {"step": (8.0, 1), "eval": (0.0, 10), "save": (0.0, 50)}  # no evaluation or save seen yet
    assert steps_for_budget(0, unmeasured, 80.0, cap=1000) == 10


def scheduler(name: str, total: int, warmup: int = 2):
    weight = torch.nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.SGD([weight], lr=1e-3)
    return optimizer, get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=total)


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_a_stretched_schedule_goes_on_from_its_step_and_ends_at_the_new_last_step(name):
    optimizer, schedule = scheduler(name, total=10)
    for _ in range(5):
        optimizer.step()
        schedule.step()
    before = optimizer.param_groups[0]["lr"]
    stretch_schedule(schedule, name, warmup_steps=2, total_steps=20)
    after = optimizer.param_groups[0]["lr"]
    planned, fresh = scheduler(name, total=20)  # the schedule as if 20 steps had been planned from the start
    for _ in range(5):
        planned.step()
        fresh.step()
    assert after == pytest.approx(fresh.get_last_lr()[0]) and after > before  # longer: later in a longer decay
    rates = []
    for _ in range(15):
        optimizer.step()
        schedule.step()
        rates.append(optimizer.param_groups[0]["lr"])
    assert rates[-1] == pytest.approx(0.0, abs=1e-12)  # the schedule ends where it says, at step 20
    assert all(a >= b for a, b in zip(rates, rates[1:]))  # and decays on the way


def test_a_shortened_schedule_ends_earlier():
    optimizer, schedule = scheduler("linear", total=40)
    for _ in range(10):
        optimizer.step()
        schedule.step()
    stretch_schedule(schedule, "linear", warmup_steps=2, total_steps=15)
    for _ in range(5):
        optimizer.step()
        schedule.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
