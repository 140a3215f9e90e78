"""Our Adafactor against the reference's, the learning-rate schedule and the weight-decay groups."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from transformers.optimization import Adafactor as ReferenceAdafactor

from bigbird_pegasus.finetune.optim import Adafactor, build_optimizer, linear_schedule


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_adafactor_matches_the_reference(weight_decay):
    torch.manual_seed(0)
    shapes = [(6, 5), (3, 4, 5), (7,)]  # factored matrices, a factored 3-d tensor, an unfactored vector
    ours = [nn.Parameter(torch.randn(shape)) for shape in shapes]
    theirs = [nn.Parameter(p.detach().clone()) for p in ours]
    mine = Adafactor(ours, lr=1e-2, weight_decay=weight_decay)
    reference = ReferenceAdafactor(theirs, lr=1e-2, weight_decay=weight_decay, scale_parameter=False,
                                   relative_step=False, warmup_init=False)
    for step in range(5):
        grads = [torch.randn(shape) * (10.0 if step == 2 else 1.0) for shape in shapes]  # step 2 gets clipped
        for params, optimizer in ((ours, mine), (theirs, reference)):
            for param, grad in zip(params, grads):
                param.grad = grad.clone()
            optimizer.step()
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    assert mine.state[ours[0]]["row_mean_sq"].shape == (6,)
    assert mine.state[ours[1]]["col_mean_sq"].shape == (3, 5)


def test_adafactor_state_round_trips():
    param = nn.Parameter(torch.ones(4, 3))
    optimizer = Adafactor([param], lr=0.1)
    param.grad = torch.full((4, 3), 0.5)
    optimizer.step()
    restored = Adafactor([nn.Parameter(torch.ones(4, 3))], lr=0.1)
    restored.load_state_dict(optimizer.state_dict())
    assert restored.state_dict()["state"][0]["step"].item() == 1.0


def test_linear_schedule_warms_up_then_decays_to_zero():
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = linear_schedule(optimizer, warmup_steps=2, total_steps=6)
    rates = []
    for _ in range(7):
        rates.append(schedule.get_last_lr()[0])
        optimizer.step()
        schedule.step()
    assert rates == pytest.approx([0.0, 0.5, 1.0, 0.75, 0.5, 0.25, 0.0])


@pytest.mark.parametrize("name, kind", [("adamw", torch.optim.AdamW), ("adafactor", Adafactor)])
def test_biases_and_norms_are_not_decayed(name, kind):
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4))
    optimizer = build_optimizer(model, name, lr=1e-3, weight_decay=0.01)
    assert isinstance(optimizer, kind)
    decayed, plain = optimizer.param_groups
    assert [p.shape for p in decayed["params"]] == [(4, 3)] and decayed["weight_decay"] == 0.01
    assert len(plain["params"]) == 3 and plain["weight_decay"] == 0.0
