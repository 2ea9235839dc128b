"""The stage contract: every curation step is a function from a frame to a frame
plus a record of what it dropped and why (the shape of a datatrove step).

A stage returns `StageOutput(kept, dropped)`. `dropped` has the input's columns
plus `drop_reason` (str), so the runner can count drops by reason in the
manifest and nothing is lost silently.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import polars as pl

DROP_REASON = "drop_reason"


@dataclass
class StageOutput:
    """What a stage kept, what it dropped (with a `drop_reason` column) and extras."""

    kept: pl.DataFrame
    dropped: pl.DataFrame | None = None
    info: dict = field(default_factory=dict)  # stage-specific figures for the manifest

    def drops_by_reason(self) -> dict[str, int]:
        if self.dropped is None or self.dropped.height == 0:
            return {}
        counts = self.dropped.group_by(DROP_REASON).len().sort(DROP_REASON)
        return dict(zip(counts[DROP_REASON].to_list(), counts["len"].to_list(), strict=True))


Stage = Callable[..., StageOutput]


def split_by_mask(df: pl.DataFrame, keep: pl.Series | pl.Expr, reason: str | pl.Expr) -> StageOutput:
    """Split `df` by a boolean mask into kept rows and dropped rows labelled with `reason`.

    >>> import polars as pl
    >>> out = split_by_mask(pl.DataFrame({"x": [1, 2, 3]}), pl.col("x") > 1, "too_small")
    >>> out.kept["x"].to_list(), out.drops_by_reason()
    ([2, 3], {'too_small': 1})
    """
    mask = df.select(keep if isinstance(keep, pl.Expr) else pl.lit(keep)).to_series()
    mask = mask.fill_null(False)
    reason_expr = reason if isinstance(reason, pl.Expr) else pl.lit(reason)
    dropped = df.filter(~mask).with_columns(reason_expr.alias(DROP_REASON))
    return StageOutput(kept=df.filter(mask), dropped=dropped)
