"""How well does the store predict the next group? Expected calibration error, and a log replay.

The sampler ranks prompts by what the store predicts their next group will do,
so the prediction should mean what it says: of the groups picked at a
posterior mean of 0.3, about 30% of the responses should be correct.

    ECE = sum over bins b of (groups in b / groups) * |mean prediction in b - mean observed in b|

with 10 equal-width bins of the prediction (the usual definition).

>>> import numpy as np
>>> expected_calibration_error(np.array([0.1, 0.1, 0.9, 0.9]), np.array([0.0, 0.25, 1.0, 0.75]))
0.025
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from curate.lazy import lazy_import

if TYPE_CHECKING:
    import numpy as np
else:  # loaded on first use, so reading a config stays fast (see curate.lazy)
    np = lazy_import("numpy")



def calibration_bins(predicted: np.ndarray, observed: np.ndarray, bins: int = 10
                     ) -> list[dict[str, float]]:
    """Per bin of the prediction: its range, groups, mean prediction, mean observation."""
    predicted = np.asarray(predicted, dtype=np.float64)
    observed = np.asarray(observed, dtype=np.float64)
    b = np.minimum((np.clip(predicted, 0.0, 1.0) * bins).astype(np.int64), bins - 1)
    out = []
    for i in range(bins):
        m = b == i
        if m.any():
            out.append({"lo": i / bins, "hi": (i + 1) / bins, "groups": int(m.sum()),
                        "predicted": float(predicted[m].mean()), "observed": float(observed[m].mean())})
    return out


def expected_calibration_error(predicted: np.ndarray, observed: np.ndarray, bins: int = 10) -> float:
    """Group-weighted mean |prediction - observation| over equal-width bins of the prediction."""
    rows = calibration_bins(predicted, observed, bins)
    total = sum(r["groups"] for r in rows)
    if not total:
        return float("nan")
    return round(sum(r["groups"] * abs(r["predicted"] - r["observed"]) for r in rows) / total, 12)


def replay_predictions(stats: Any, groups: Iterable[tuple[int, list[str], np.ndarray]]
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Feed a log to `stats` step by step; return each group's prediction before it and its mean.

    `groups` yields (step, sample ids of the step's groups, rewards of shape
    (groups, G)), steps ascending. The prediction is the posterior mean at the
    step, before the step's update: what a sampler picking that prompt saw.

    >>> from sampling import SampleStats
    >>> s = SampleStats(["a", "b"], share=True, prompt_strength=2.0)
    >>> pred, obs = replay_predictions(s, [(1, ["a"], np.array([[1.0, 1.0]])),
    ...                                    (2, ["b"], np.array([[1.0, 0.0]]))])
    >>> obs.tolist(), bool(pred[1] > 0.5)   # b, unseen, borrows a's evidence through the domain
    ([1.0, 0.5], True)
    """
    preds, obs = [], []
    for step, ids, rewards in groups:
        rewards = np.asarray(rewards, dtype=np.float64)
        preds.append(stats.mean(ids, step))
        obs.append(rewards.mean(axis=1))
        g = rewards.shape[1]
        stats.update([i for i in ids for _ in range(g)], rewards.reshape(-1), step=step)
    if not preds:
        return np.empty(0), np.empty(0)
    return np.concatenate(preds), np.concatenate(obs)
