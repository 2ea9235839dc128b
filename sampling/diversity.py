"""Response diversity of a group: distinct n-grams across its responses.

MMR1's variance-aware sampling promotes prompts whose responses differ; this is
the cheap, model-free measure of that: the share of distinct word n-grams among
all n-grams the group produced (1.0 = no n-gram repeated anywhere in the group,
near 0 = the responses are copies of each other).
"""

from __future__ import annotations

from collections.abc import Sequence


def distinct_ngram_ratio(responses: Sequence[str], n: int = 2) -> float:
    """Distinct n-grams / all n-grams over a group's responses (whitespace words).

    Responses shorter than n count their words as unigrams, so short answers
    ("42", "41") still register as different.

    >>> distinct_ngram_ratio(["a b c", "a b c"])
    0.5
    >>> distinct_ngram_ratio(["a b c", "x y z"])
    1.0
    >>> distinct_ngram_ratio(["", ""])
    0.0
    """
    seen: set[tuple[str, ...]] = set()
    total = 0
    for text in responses:
        words = str(text).split()
        if len(words) < n:
            grams = [(w,) for w in words]
        else:
            grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
        total += len(grams)
        seen.update(grams)
    return len(seen) / total if total else 0.0
