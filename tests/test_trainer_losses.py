"""GRPO maths checked against values computed by hand on a fixed batch."""

from __future__ import annotations

import math

import pytest
import torch

from trainer.losses import group_advantages, informative_groups, policy_loss

# Two responses, two token slots; the second response has one real token.
LOGP = [[-1.0, -2.0], [-0.5, -0.1]]
OLD = [[-1.2, -1.5], [-0.5, -0.3]]
ADV = [1.0, -1.0]
MASK = [[1, 1], [1, 0]]
LOW, HIGH = 0.2, 0.28


def _token_losses() -> list[list[float]]:
    """-min(r*A, clip(r, 1-low, 1+high)*A) per token, in plain Python."""
    out = []
    for lp, old, a in zip(LOGP, OLD, ADV, strict=True):
        row = []
        for x, y in zip(lp, old, strict=True):
            r = math.exp(x - y)
            row.append(-min(r * a, min(max(r, 1 - LOW), 1 + HIGH) * a))
        out.append(row)
    return out


def _loss(agg: str, **kw) -> float:
    loss, _ = policy_loss(torch.tensor(LOGP), torch.tensor(OLD), torch.tensor(ADV),
                          torch.tensor(MASK), LOW, HIGH, agg, **kw)
    return float(loss)


def test_token_level_aggregation_matches_hand_computation():
    t = _token_losses()
    expected = (t[0][0] + t[0][1] + t[1][0]) / 3  # masked token excluded
    assert _loss("token") == pytest.approx(expected, rel=1e-6)


def test_sequence_mean_aggregation_matches_hand_computation():
    t = _token_losses()
    expected = ((t[0][0] + t[0][1]) / 2 + t[1][0] / 1) / 2
    assert _loss("sequence") == pytest.approx(expected, rel=1e-6)


def test_dr_grpo_aggregation_divides_by_a_constant():
    t = _token_losses()
    expected = (t[0][0] + t[0][1] + t[1][0]) / (2 * 16)
    assert _loss("dr_grpo", max_tokens=16) == pytest.approx(expected, rel=1e-6)


def test_clip_higher_is_asymmetric():
    # ratio 1.25 with A > 0: inside [0.8, 1.28] so unclipped; symmetric 0.2 would clip at 1.2
    logp, old = torch.tensor([[math.log(1.25)]]), torch.tensor([[0.0]])
    adv, mask = torch.tensor([1.0]), torch.tensor([[1]])
    asym, _ = policy_loss(logp, old, adv, mask, 0.2, 0.28)
    sym, _ = policy_loss(logp, old, adv, mask, 0.2, 0.2)
    assert float(asym) == pytest.approx(-1.25)
    assert float(sym) == pytest.approx(-1.2)


def test_kl_term_is_k3_estimator():
    ref = torch.tensor([[-1.1, -1.9], [-0.4, -0.1]])
    beta = 0.1
    t = _token_losses()
    k3 = [[math.exp(r - x) - (r - x) - 1 for r, x in zip(rr, xx, strict=True)]
          for rr, xx in zip(ref.tolist(), LOGP, strict=True)]
    expected = (t[0][0] + beta * k3[0][0] + t[0][1] + beta * k3[0][1] + t[1][0] + beta * k3[1][0]) / 3
    assert _loss("token", ref_logp=ref, beta=beta) == pytest.approx(expected, rel=1e-6)


def test_gradient_flows_only_through_unmasked_tokens():
    logp = torch.tensor(LOGP, requires_grad=True)
    loss, _ = policy_loss(logp, torch.tensor(OLD), torch.tensor(ADV), torch.tensor(MASK), LOW, HIGH)
    loss.backward()
    assert logp.grad[1, 1] == 0
    assert logp.grad[0, 0] != 0


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_constant_group_gets_zero_advantage(scale):
    rewards = torch.tensor([1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0])
    adv = group_advantages(rewards, 3, scale)
    assert adv[:3].tolist() == [0.0, 0.0, 0.0]
    assert adv[6:].tolist() == [0.0, 0.0, 0.0]
    assert adv[3:6].abs().sum() > 0
    assert informative_groups(rewards, 3).tolist() == [False, True, False]


def test_group_std_scaling_by_hand():
    adv = group_advantages(torch.tensor([1.0, 0.0, 0.0, 0.0]), 4, "group")
    mean, std = 0.25, math.sqrt(((0.75**2) + 3 * 0.25**2) / 3)  # unbiased std
    assert adv.tolist() == pytest.approx([(1 - mean) / std] + [(0 - mean) / std] * 3, rel=1e-4)
    assert group_advantages(torch.tensor([1.0, 0.0, 0.0, 0.0]), 4, "none").tolist() == \
        pytest.approx([0.75, -0.25, -0.25, -0.25])


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="groups of 3"):
        group_advantages(torch.zeros(4), 3)
    with pytest.raises(ValueError, match="loss_agg"):
        _loss("bogus")
