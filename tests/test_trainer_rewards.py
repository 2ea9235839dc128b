"""Reward functions: verifiable (curate.answers), format, length, weighted combination."""

from __future__ import annotations

import pytest

from trainer.rewards import combine, default_reward, format_reward, length_reward, verifiable_reward


def test_verifiable_reward_uses_answer_equivalence():
    out = verifiable_reward(
        ["p"] * 4, ["\\boxed{12}", "so \\boxed{12.0}", "\\boxed{13}", "no tag"],
        answer=["12"] * 4, answer_type=["numeric"] * 4,
    )
    assert out == [1.0, 1.0, 0.0, 0.0]


def test_format_reward_wants_one_final_tag():
    out = format_reward(["p"] * 4, ["\\boxed{1}", "x \\boxed{1}\n", "\\boxed{1} more", "\\boxed{1}\\boxed{2}"])
    assert out == [1.0, 1.0, 0.0, 0.0]


def test_length_reward_soft_penalty():
    fn = length_reward(max_tokens=10, buffer=4)
    out = fn(["p"] * 3, ["a", "b", "c"], response_tokens=[5, 8, 10], answer=["a"] * 3)
    assert out == pytest.approx([0.0, -0.5, -1.0])


def test_combined_reward_weights_and_keeps_components():
    r = combine({"correct": (verifiable_reward, 1.0), "format": (format_reward, 0.5)})
    out = r(["p", "p"], ["\\boxed{3}", "3"], answer=["3", "3"], answer_type=["numeric"] * 2)
    assert out.total == [1.5, 0.0]
    assert out.components == {"correct": [1.0, 0.0], "format": [1.0, 0.0]}
    assert set(default_reward(length=0.2).parts) == {"correct", "format", "length"}


def test_a_reward_returning_the_wrong_count_is_an_error():
    r = combine({"bad": (lambda prompts, completions, **_: [1.0], 1.0)})
    with pytest.raises(ValueError, match="'bad' returned 1 values for 2"):
        r(["p", "p"], ["a", "b"], answer=["a", "b"])
