"""Learning-rate schedules (linear warmup, then constant or cosine to zero)."""

from __future__ import annotations

import math

import torch


def lr_lambda(schedule: str, warmup: int, total: int):
    """Multiplier of the base LR at optimizer step `s` (0-based)."""

    def f(s: int) -> float:
        if warmup and s < warmup:
            return (s + 1) / warmup
        if schedule == "constant":
            return 1.0
        progress = min(1.0, (s - warmup) / max(1, total - warmup))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    if schedule not in ("constant", "cosine"):
        raise ValueError(f"lr_schedule must be constant or cosine, got {schedule!r}")
    return f


def make_scheduler(optimizer: torch.optim.Optimizer, schedule: str, warmup: int, total: int):
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(schedule, warmup, total))
