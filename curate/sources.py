"""Declarative column mappings from a raw data set to the Sample schema.

A `SourceMapping` names, for each Sample field, the raw column it comes from
and how the answer is read out of its column. Presets cover the common sets:

===========  ==============================================================
preset       mapping
===========  ==============================================================
``gsm8k``    question -> prompt; answer = text after ``####`` in `answer`;
             the full answer text -> solution; domain/task ``math``
``math``     problem -> prompt; answer = last ``\\boxed{}`` of `solution`;
             domain from `type` (slug), `level` ("Level 3" -> 3) in meta
``mathv``    question -> prompt (+ its options); answer; image paths resolved
             relative to the file; domain from `subject`; level in meta
``sample``   already in the Sample schema (e.g. curate.synthetic output)
===========  ==============================================================

>>> PRESETS["gsm8k"].prompt, PRESETS["gsm8k"].answer_from
('question', 'gsm8k')
>>> SourceMapping(prompt="q", answer="a").answer_from
'value'
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from curate.config import Config

AnswerFrom = Literal["value", "gsm8k", "boxed", "auto"]


class SourceMapping(Config):
    """Which raw column feeds each Sample field (None: not in this source)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt: str = Field(description="column holding the prompt text (required)")
    answer: str | None = Field(None, description="column holding the answer (or a text to extract it from)")
    answer_from: AnswerFrom = Field(
        "value",
        description="value: the column is the answer; gsm8k: text after '####'; "
        "boxed: the last \\boxed{}; auto: curate.answers.extract_answer",
    )
    solution: str | None = None
    images: str | None = Field(None, description="column with an image path or a list of paths")
    options: str | None = Field(None, description="column with the list of multiple-choice options")
    domain: str | None = None
    task: str | None = None
    difficulty: str | None = None
    answer_type: str | None = None
    level: str | None = Field(None, description="column kept in meta as `level` ('Level 3' -> 3)")
    meta: list[str] = Field(default_factory=list, description="extra columns kept in the meta JSON")
    slug_domain: bool = Field(False, description="lower-case the domain and join words with '_'")
    default_domain: str | None = None
    default_task: str | None = None
    options_in_prompt: bool = Field(True, description="append the options to the prompt")
    sample_schema: bool = Field(False, description="rows are already Samples (preset 'sample')")


PRESETS: dict[str, SourceMapping] = {
    "gsm8k": SourceMapping(
        prompt="question", answer="answer", answer_from="gsm8k", solution="answer",
        default_domain="math", default_task="math",
    ),
    "math": SourceMapping(
        prompt="problem", answer="solution", answer_from="boxed", solution="solution",
        domain="type", slug_domain=True, level="level", meta=["type", "idx", "unique_id"],
        default_domain="math", default_task="math",
    ),
    "mathv": SourceMapping(
        prompt="question", answer="answer", solution="solution", images="image",
        options="options", domain="subject", slug_domain=True, level="level",
        meta=["id", "subject"], default_domain="math", default_task="math",
    ),
    "sample": SourceMapping(
        prompt="prompt", answer="answer", solution="solution", images="images",
        domain="domain", task="task", difficulty="difficulty", answer_type="answer_type",
        sample_schema=True,
    ),
}


def resolve_mapping(preset: str | None = None, mapping: SourceMapping | dict | None = None
                    ) -> SourceMapping:
    """A preset by name, optionally overridden field by field with `mapping`.

    >>> resolve_mapping("gsm8k", {"prompt": "q"}).prompt
    'q'
    """
    if preset is None and mapping is None:
        raise ValueError(f"give a preset (one of {sorted(PRESETS)}) or an explicit mapping")
    if preset is not None and preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}: expected one of {sorted(PRESETS)}")
    if mapping is None:
        return PRESETS[preset]  # type: ignore[index]
    overrides = mapping.model_dump(exclude_unset=True) if isinstance(mapping, SourceMapping) else dict(mapping)
    if preset is None:
        return SourceMapping.model_validate(overrides)
    return PRESETS[preset].model_copy(update=SourceMapping.model_validate(
        {"prompt": PRESETS[preset].prompt, **overrides}).model_dump(include=set(overrides)))
