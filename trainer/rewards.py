"""Reward functions: plain callables with one documented signature.

A reward function takes the prompts and completions of a batch plus the
batch's dataset columns as keyword lists, and returns one float per
completion (the TRL convention, so TRL reward functions work here too)::

    def my_reward(prompts: list[str], completions: list[str], **columns) -> list[float]

`columns` always holds ``answer``, ``answer_type``, ``domain``, ``sample_id``
and ``response_tokens`` (lists aligned with `completions`). Combine functions
with weights using `combine`:

>>> r = combine({"correct": (verifiable_reward, 1.0), "format": (format_reward, 0.1)})
>>> out = r(["add:1+2="] * 2, ["\\\\boxed{3}", "3"],
...         answer=["3", "3"], answer_type=["numeric"] * 2)
>>> [round(x, 3) for x in out.total], out.components["correct"]
([1.1, 0.0], [1.0, 0.0])
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

RewardFn = Callable[..., Sequence[float]]

# A response is well formatted when it ends with exactly one final-answer tag.
_TAG_AT_END = re.compile(r"^(?:(?!\\boxed\{)[\s\S])*\\boxed\{[^{}]*\}\s*$")


@lru_cache(maxsize=200_000)
def _check(completion: str, gold: str, answer_type: str) -> bool:
    """Cached: rollouts repeat the same wrong answers many times per step."""
    from curate.answers import extract_answer, is_equivalent

    pred = extract_answer(completion)
    if pred is None or pred == "":
        return False
    return bool(is_equivalent(pred, gold, answer_type))


def verifiable_reward(
    prompts: Sequence[str], completions: Sequence[str], *, answer: Sequence[str],
    answer_type: Sequence[str] | None = None, **_: object,
) -> list[float]:
    """1.0 when the extracted final answer is equivalent to the gold answer, else 0.0.

    Built on `curate.answers` (math-verify for math, numeric tolerance, choice
    letters, normalised text), so training and curation agree on correctness.

    >>> completions = ["\\\\boxed{3}", "\\\\boxed{4}", "so \\\\boxed{3.0}", "3"]
    >>> verifiable_reward(["add:1+2="] * 4, completions, answer=["3"] * 4,
    ...                   answer_type=["numeric"] * 4)
    [1.0, 0.0, 1.0, 0.0]
    """
    types = answer_type if answer_type is not None else ["text"] * len(completions)
    return [float(_check(c, str(a), str(t or "text")))
            for c, a, t in zip(completions, answer, types, strict=True)]


def format_reward(prompts: Sequence[str], completions: Sequence[str], **_: object) -> list[float]:
    """1.0 when the completion ends with exactly one ``\\boxed{...}`` tag, else 0.0.

    >>> completions = ["so \\\\boxed{3}", "\\\\boxed{3} done", "\\\\boxed{1} \\\\boxed{2}"]
    >>> format_reward([""] * 3, completions)
    [1.0, 0.0, 0.0]
    """
    return [1.0 if _TAG_AT_END.match(c) else 0.0 for c in completions]


def length_reward(
    max_tokens: int, buffer: int = 0, bonus_for_short_correct: float = 0.0
) -> RewardFn:
    """Soft over-length penalty (DAPO) with an optional brevity bonus (Observe-R1 style).

    Penalty: 0 below ``max_tokens - buffer``, then linear down to -1 at
    ``max_tokens``. Bonus: ``bonus_for_short_correct * (1 - len/max_tokens)``
    for completions that `verifiable_reward` marks correct.

    >>> r = length_reward(max_tokens=10, buffer=4)
    >>> r([""] * 5, [""] * 5, response_tokens=[5, 6, 8, 10, 12])
    [0.0, 0.0, -0.5, -1.0, -1.0]
    >>> short = length_reward(max_tokens=10, bonus_for_short_correct=0.5)
    >>> short([""] * 2, ["\\\\boxed{3}"] * 2, response_tokens=[4, 4], answer=["3", "4"])
    [0.3, 0.0]
    """

    def reward(prompts, completions, *, response_tokens, **columns) -> list[float]:
        out = []
        correct = (verifiable_reward(prompts, completions, **columns)
                   if bonus_for_short_correct else [0.0] * len(completions))
        start = max_tokens - buffer
        for n, ok in zip(response_tokens, correct, strict=True):
            pen = 0.0 if n <= start or buffer <= 0 else -min(1.0, (n - start) / buffer)
            bonus = bonus_for_short_correct * max(0.0, 1 - n / max_tokens) * ok
            out.append(pen + bonus)
        return out

    return reward


@dataclass
class RewardOutput:
    """Weighted total per completion plus each named component (unweighted)."""

    total: list[float]
    components: dict[str, list[float]]


class CombinedReward:
    """Weighted sum of named reward functions; keeps the parts for the rollout log.

    >>> r = CombinedReward({"correct": (verifiable_reward, 1.0), "format": (format_reward, 0.5)})
    >>> out = r(["add:1+2="] * 3, ["\\\\boxed{3}", "\\\\boxed{4}", "3"], answer=["3"] * 3)
    >>> out.total
    [1.5, 0.5, 0.0]
    >>> out.components
    {'correct': [1.0, 0.0, 0.0], 'format': [1.0, 1.0, 0.0]}
    >>> CombinedReward({})
    Traceback (most recent call last):
    ...
    ValueError: a combined reward needs at least one reward function
    """

    def __init__(self, parts: Mapping[str, tuple[RewardFn, float]]) -> None:
        if not parts:
            raise ValueError("a combined reward needs at least one reward function")
        self.parts = dict(parts)

    def __call__(self, prompts: Sequence[str], completions: Sequence[str], **columns) -> RewardOutput:
        n = len(completions)
        total = [0.0] * n
        components: dict[str, list[float]] = {}
        for name, (fn, weight) in self.parts.items():
            values = [float(v) for v in fn(prompts, completions, **columns)]
            if len(values) != n:
                raise ValueError(f"reward {name!r} returned {len(values)} values for {n} completions")
            components[name] = values
            total = [t + weight * v for t, v in zip(total, values, strict=True)]
        return RewardOutput(total=total, components=components)


def combine(parts: Mapping[str, tuple[RewardFn, float]]) -> CombinedReward:
    """`CombinedReward` from ``{name: (fn, weight)}``.

    >>> odd = lambda prompts, completions, **_: [float(len(c) % 2) for c in completions]
    >>> r = combine({"odd": (odd, 2.0), "format": (format_reward, 1.0)})
    >>> list(r.parts)
    ['odd', 'format']
    >>> r(["p"] * 3, ["a", "ab", "abc"]).total
    [2.0, 0.0, 2.0]
    """
    return CombinedReward(parts)


def default_reward(
    correct: float = 1.0, format: float = 0.1, length: float = 0.0, max_tokens: int = 32,
    length_buffer: int = 8,
) -> CombinedReward:
    """Correctness + format (+ optional soft length penalty), as configured by weights.

    >>> list(default_reward().parts), list(default_reward(length=0.5).parts)
    (['correct', 'format'], ['correct', 'format', 'length'])
    >>> r = default_reward(length=0.5, max_tokens=8, length_buffer=4)
    >>> out = r(["add:1+2="] * 2, ["\\\\boxed{3}", "\\\\boxed{3}"], answer=["3"] * 2,
    ...         response_tokens=[3, 8])
    >>> [round(x, 3) for x in out.total], out.components["length"]
    ([1.1, 0.6], [0.0, -1.0])
    """
    parts: dict[str, tuple[RewardFn, float]] = {"correct": (verifiable_reward, correct),
                                                "format": (format_reward, format)}
    if length:
        parts["length"] = (length_reward(max_tokens, length_buffer), length)
    return CombinedReward(parts)
