"""Curation: columnar pipelines that build RL and cold-start datasets.

Names are imported lazily, so `import curate` stays cheap and each stage's
heavy dependencies (sentence-transformers, scipy) load only when used.

>>> import curate
>>> curate.sample_id("What is 2+2?", "4")[:8]
'4a886514'
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    # schema and ids
    "SAMPLE_SCHEMA": "curate.schema",
    "ROLLOUT_SCHEMA": "curate.rollout_log",
    "RolloutWriter": "curate.rollout_log",
    "sample_id": "curate.schema",
    # ingest
    "read_samples": "curate.ingest",
    # answers
    "detect_answer_type": "curate.answers",
    "extract_answer": "curate.answers",
    "normalize_answer": "curate.answers",
    "is_equivalent": "curate.answers",
    # dedup and decontamination
    "dedup_exact": "curate.dedup",
    "dedup_near": "curate.dedup",
    "dedup_images": "curate.dedup",
    "decontaminate": "curate.decontam",
    # rollout logs back into curation
    "read_rollouts": "curate.importers",
    "pass_rates": "curate.from_logs",
    "route_prompts": "curate.from_logs",
    "preference_pairs": "curate.from_logs",
    "self_distill": "curate.from_logs",
}
_SUBMODULES = {"mixture", "synthetic", "synthetic_vision", "filters", "answers", "ingest", "dedup", "decontam"}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"curate.{name}")
    raise AttributeError(f"module 'curate' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*_EXPORTS, *_SUBMODULES])
