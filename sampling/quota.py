"""Per-domain quotas: split a batch of k by mixture weights, largest remainder first."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from curate.lazy import lazy_import

if TYPE_CHECKING:
    import numpy as np
else:  # loaded on first use, so reading a config stays fast (see curate.lazy)
    np = lazy_import("numpy")



def largest_remainder(k: int, weights: Sequence[float] | np.ndarray,
                      capacity: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
    """Integer quotas summing to k, proportional to `weights` (Hamilton's method).

    Each share gets floor(k * w / sum(w)); the seats left go to the largest
    fractional remainders (ties: lower index first).  With `capacity`, a share
    never exceeds it; the overflow is shared again among the others by weight.

    >>> largest_remainder(10, [0.5, 0.3, 0.2]).tolist()
    [5, 3, 2]
    >>> largest_remainder(7, [1, 1, 1]).tolist()
    [3, 2, 2]
    >>> largest_remainder(10, [0.9, 0.1], capacity=[4, 100]).tolist()
    [4, 6]
    """
    w = np.asarray(weights, dtype=np.float64)
    if (w < 0).any() or not np.isfinite(w).all() or w.sum() <= 0:
        raise ValueError(f"weights must be finite, >= 0 and not all 0, got {w.tolist()}")
    cap = np.full(len(w), k, np.int64) if capacity is None else np.asarray(capacity, np.int64)
    cap = np.where(w > 0, cap, 0)
    if cap.sum() < k:
        raise ValueError(f"cannot fill {k}: the weighted groups hold only {int(cap.sum())}")
    out = np.zeros(len(w), dtype=np.int64)
    left = k
    while left > 0:
        room = (out < cap) & (w > 0)
        ww = np.where(room, w, 0.0)
        raw = left * ww / ww.sum()
        add = np.floor(raw).astype(np.int64)
        rem = left - int(add.sum())
        order = np.lexsort((np.arange(len(w)), -(raw - add)))
        order = order[room[order]]
        add[order[:rem]] += 1
        add = np.minimum(add, cap - out)
        out += add
        left = k - int(out.sum())
    return out


def domain_quotas(k: int, domains: Sequence[str], weights: Mapping[str, float],
                  sizes: Sequence[int]) -> np.ndarray:
    """Quota per domain (in `domains` order) from a {domain: weight} mapping.

    Domains missing from `weights` get weight 0; a weight for a domain the
    store does not have is an error naming it.
    """
    unknown = sorted(set(weights) - set(domains))
    if unknown:
        raise ValueError(f"weights name unknown domain(s) {unknown}; the store has {list(domains)}")
    w = np.array([float(weights.get(d, 0.0)) for d in domains])
    return largest_remainder(k, w, capacity=sizes)
