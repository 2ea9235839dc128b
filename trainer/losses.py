"""GRPO maths on plain tensors: group-relative advantages and the clipped surrogate.

Kept free of models and I/O so every variant can be checked by hand.

>>> import torch
>>> [round(a, 3) for a in group_advantages(torch.tensor([1.0, 0.0, 1.0, 1.0, 1.0, 1.0]), 3, "none").tolist()]
[0.333, -0.667, 0.333, 0.0, 0.0, 0.0]
"""

from __future__ import annotations

import torch

EPS = 1e-6


def group_advantages(rewards: torch.Tensor, group_size: int, scale: str = "group") -> torch.Tensor:
    """Reward minus its group's mean, optionally divided by the group or batch std.

    `rewards` is flat, groups are consecutive runs of `group_size`. A group
    whose rewards are all equal gets advantage exactly 0 under every scaling.

    >>> rewards = torch.tensor([1.0, 0.0, 1.0, 1.0, 1.0, 1.0])
    >>> [round(a, 3) for a in group_advantages(rewards, 3).tolist()]
    [0.577, -1.155, 0.577, 0.0, 0.0, 0.0]
    >>> [round(a, 3) for a in group_advantages(rewards, 3, "batch").tolist()]
    [0.816, -1.633, 0.816, 0.0, 0.0, 0.0]
    >>> group_advantages(rewards, 4)
    Traceback (most recent call last):
    ...
    ValueError: 6 rewards do not split into groups of 4
    """
    if rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
    r = rewards.view(-1, group_size).to(torch.float64)
    centred = r - r.mean(dim=1, keepdim=True)
    if scale == "group":
        std = r.std(dim=1, keepdim=True)  # unbiased, as GRPO and TRL
        adv = centred / (std + EPS)
    elif scale == "batch":
        adv = centred / (r.std() + EPS)
    elif scale == "none":
        adv = centred
    else:
        raise ValueError(f"adv_scale must be group, batch or none, got {scale!r}")
    # exact zeros for constant groups (no 0/eps noise)
    constant = (r.max(dim=1, keepdim=True).values - r.min(dim=1, keepdim=True).values) == 0
    adv = torch.where(constant, torch.zeros_like(adv), adv)
    return adv.view(-1).to(rewards.dtype)


def informative_groups(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """Boolean per group: do its rewards differ (so it carries a gradient signal)?"""
    r = rewards.view(-1, group_size)
    return (r.max(dim=1).values - r.min(dim=1).values) > 0


def policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_low: float = 0.2,
    clip_high: float = 0.28,
    loss_agg: str = "token",
    ref_logp: torch.Tensor | None = None,
    beta: float = 0.0,
    max_tokens: int | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Clipped surrogate (PPO/GRPO) with asymmetric clipping and optional KL.

    Shapes: `logp`, `old_logp`, `ref_logp`, `mask` are (B, T) over response
    tokens; `advantages` is (B,). Per token:
    ``-min(ratio * A, clip(ratio, 1 - clip_low, 1 + clip_high) * A)
    + beta * KL_k3(ref || policy)``, aggregated by `loss_agg`:

    * ``token``: sum over all tokens / number of tokens (DAPO),
    * ``sequence``: mean over each response's tokens, then over responses (GRPO),
    * ``dr_grpo``: sum over all tokens / (responses * max_tokens) (Dr. GRPO).

    On policy (ratio 1) the loss is minus the advantage averaged over tokens:

    >>> logp = torch.zeros(2, 3)
    >>> mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    >>> adv = torch.tensor([1.0, -0.5])
    >>> loss, info = policy_loss(logp, logp, adv, mask)
    >>> loss.item(), info
    (-0.625, {'clip_frac': 0.0, 'kl': 0.0})
    >>> policy_loss(logp, logp, adv, mask, loss_agg="sequence")[0].item()
    -0.25

    A ratio of 2 is clipped to 1 + clip_high for a positive advantage:

    >>> loss, info = policy_loss(logp + torch.tensor(2.0).log(), logp, torch.ones(2), mask)
    >>> round(loss.item(), 4), info["clip_frac"]
    (-1.28, 1.0)
    """
    mask = mask.to(logp.dtype)
    ratio = torch.exp(logp - old_logp)
    adv = advantages.to(logp.dtype).unsqueeze(1)
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high) * adv
    per_token = -torch.minimum(unclipped, clipped)
    kl_mean = 0.0
    if beta and ref_logp is not None:
        delta = ref_logp - logp
        kl = torch.exp(delta) - delta - 1.0  # k3 estimator, >= 0, unbiased
        per_token = per_token + beta * kl
        kl_mean = float((kl.detach() * mask).sum() / mask.sum().clamp(min=1))
    loss = aggregate(per_token, mask, loss_agg, max_tokens)
    with torch.no_grad():
        n = mask.sum().clamp(min=1)
        clip_frac = float((((ratio < 1 - clip_low) | (ratio > 1 + clip_high)).to(mask.dtype) * mask).sum() / n)
    return loss, {"clip_frac": clip_frac, "kl": kl_mean}


def aggregate(per_token: torch.Tensor, mask: torch.Tensor, loss_agg: str,
              max_tokens: int | None = None) -> torch.Tensor:
    """Reduce a (B, T) per-token loss to a scalar (see `policy_loss`)."""
    mask = mask.to(per_token.dtype)
    if loss_agg == "token":
        return (per_token * mask).sum() / mask.sum().clamp(min=1)
    if loss_agg == "sequence":
        per_seq = (per_token * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
        return per_seq.mean()
    if loss_agg == "dr_grpo":
        denom = per_token.shape[0] * (max_tokens or per_token.shape[1])
        return (per_token * mask).sum() / denom
    raise ValueError(f"loss_agg must be token, sequence or dr_grpo, got {loss_agg!r}")
