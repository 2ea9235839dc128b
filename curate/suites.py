"""The domain names of the synthetic suites, importable without numpy or pyarrow.

A `thresher run` config is checked against them when it is read, before any
data library loads (see curate.lazy); `curate.synthetic` and
`curate.synthetic_vision` build the problems and take their names from here.

>>> "add" in TEXT_DOMAINS and "majority" in VISION_DOMAINS
True
>>> set(DEFAULT_TEXT_DOMAINS) <= set(TEXT_DOMAINS)
True
"""

from __future__ import annotations

TEXT_DOMAINS: tuple[str, ...] = ("add", "mul", "cmp", "count", "sort", "radd", "dsort")
DEFAULT_TEXT_DOMAINS: tuple[str, ...] = ("add", "mul", "cmp", "count", "sort")
VISION_DOMAINS: tuple[str, ...] = ("bars", "majority", "vcount", "cell")
SUITES: dict[str, tuple[str, ...]] = {"text": TEXT_DOMAINS, "vision": VISION_DOMAINS}
