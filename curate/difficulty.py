"""Difficulty filtering: keep the prompts a model solves sometimes, not always or never.

The `difficulty` curation stage keeps a pass-rate band (default ``0 < p < 1``,
the MMR1 / OpenMMReasoner filter: a prompt every rollout solves or none solves
gives GRPO a zero-advantage group) and writes each kept row's pass rate to
``difficulty`` and its rollout count to ``n_rollouts``, the columns the
statistics store (`sampling.SampleStats.from_samples`) takes as its prior.

Pass rates come from a rollout log (``run = "RUN"``, e.g. what ``thresher
rollout`` wrote) or, without one, from the frame's own ``difficulty`` column
(set by the `rollout` stage, or an earlier curation).

>>> import polars as pl
>>> df = pl.DataFrame({"id": ["a", "b", "c", "d"], "difficulty": [0.0, 0.5, 1.0, None]})
>>> out = difficulty(df)
>>> out.kept["id"].to_list(), out.drops_by_reason()
(['b'], {'always_solved': 1, 'never_solved': 1, 'no_rollouts': 1})
>>> difficulty(df, low=0.0, high=1.0, include_low=True).kept["id"].to_list()
['a', 'b']
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from curate.config import signature_model
from curate.errors import ConfigError, DataError
from curate.lazy import lazy_import
from curate.stage import DROP_REASON, SpecView, StageContext, StageOutput, Step

if TYPE_CHECKING:
    import polars as pl
else:  # loaded on first use, so reading a config stays fast (see curate.lazy)
    pl = lazy_import("polars")


def read_pass_rates(run: str | os.PathLike) -> pl.DataFrame:
    """Per-sample pass rates of the rollout log under ``RUN/rollouts`` (see `curate.from_logs.pass_rates`).

    >>> read_pass_rates("/no/such/run")
    Traceback (most recent call last):
    ...
    curate.errors.DataError: /no/such/run: no rollout log (expected RUN/rollouts/part-*.parquet)
    """
    from curate.from_logs import pass_rates

    parts = sorted((Path(run) / "rollouts").glob("part-*.parquet"))
    if not parts:
        raise DataError(f"{run}: no rollout log (expected RUN/rollouts/part-*.parquet)")
    log = pl.read_parquet(parts, columns=["sample_id", "correct", "reward"])
    if log["correct"].null_count():
        log = log.with_columns(pl.col("correct").fill_null(pl.col("reward") >= 0.5))
    return pass_rates(log, k=(1,))


def difficulty(df: pl.DataFrame, *, run: str | None = None, low: float = 0.0, high: float = 1.0,
               include_low: bool = False, include_high: bool = False, min_rollouts: int = 1,
               id_col: str = "id") -> StageOutput:
    """Keep rows whose pass rate p lies in the band (low, high); write `difficulty`, `n_rollouts`.

    `include_low` / `include_high` close the band at that end (``low <= p``,
    ``p <= high``). Drop reasons: ``never_solved`` (below the band),
    ``always_solved`` (above it), ``too_few_rollouts`` (fewer than `min_rollouts`),
    ``no_rollouts`` (no pass rate known).

    >>> import polars as pl
    >>> df = pl.DataFrame({"id": ["a", "b"], "difficulty": [0.1, 0.95], "n_rollouts": [8, 8]})
    >>> difficulty(df, low=0.2, high=0.9).drops_by_reason()
    {'always_solved': 1, 'never_solved': 1}
    >>> difficulty(df, low=0.5, high=0.4)
    Traceback (most recent call last):
    ...
    curate.errors.ConfigError: difficulty: need 0 <= low <= high <= 1, got low=0.5, high=0.4
    """
    if not 0 <= low <= high <= 1:
        raise ConfigError(f"difficulty: need 0 <= low <= high <= 1, got low={low}, high={high}")
    if id_col not in df.columns:
        raise DataError(f"difficulty: the data has no {id_col!r} column (has {df.columns})")
    base = df.drop([c for c in ("difficulty", "n_rollouts") if c in df.columns]) if run else df
    info: dict = {"band": [low, high], "include_low": include_low, "include_high": include_high}
    if run:
        rates = read_pass_rates(run).select(
            pl.col("sample_id").alias(id_col), pl.col("pass_rate").alias("difficulty"),
            pl.col("n").cast(pl.Int64).alias("n_rollouts"))
        frame = base.join(rates, on=id_col, how="left")
        info["run"] = str(run)
        info["matched"] = int(frame["difficulty"].is_not_null().sum())
    else:
        if "difficulty" not in df.columns:
            raise DataError("difficulty: the data has no `difficulty` column; give `run` (a rollout "
                             "log) or put a `rollout` stage before this one")
        frame = base if "n_rollouts" in base.columns else base.with_columns(
            pl.lit(None, dtype=pl.Int64).alias("n_rollouts"))
    frame = frame.with_columns(pl.col("difficulty").cast(pl.Float64),
                               pl.col("n_rollouts").cast(pl.Int64))
    p, n = pl.col("difficulty"), pl.col("n_rollouts")
    below = (p < low) if include_low else (p <= low)
    above = (p > high) if include_high else (p >= high)
    reason = (pl.when(p.is_null()).then(pl.lit("no_rollouts"))
              .when(n.is_not_null() & (n < min_rollouts)).then(pl.lit("too_few_rollouts"))
              .when(below).then(pl.lit("never_solved"))
              .when(above).then(pl.lit("always_solved")))
    labelled = frame.with_columns(reason.alias(DROP_REASON))
    cols = [*df.columns, *[c for c in ("difficulty", "n_rollouts") if c not in df.columns]]
    kept = labelled.filter(pl.col(DROP_REASON).is_null()).select(cols)
    dropped = labelled.filter(pl.col(DROP_REASON).is_not_null()).select([*cols, DROP_REASON])
    info["kept"] = kept.height
    return StageOutput(kept=kept, dropped=dropped, info=info)


class Difficulty(Step):
    """The `difficulty` curation stage: `difficulty` with its `run` path resolved against
    the spec file's folder.

    >>> import polars as pl
    >>> from curate.stage import StageContext
    >>> step = Difficulty.build({"low": 0.2})
    >>> step.run(pl.DataFrame({"id": ["a", "b"], "difficulty": [0.1, 0.5]}), StageContext()).kept["id"].to_list()
    ['b']
    """

    name = "difficulty"
    Params = signature_model(difficulty, name, skip_first=True)

    @classmethod
    def check(cls, params: dict, spec: SpecView, where: str) -> dict:
        if params.get("run"):
            params = {**params, "run": spec.resolve(params["run"])}
        return params

    def run(self, df: pl.DataFrame, ctx: StageContext) -> StageOutput:
        return difficulty(df, **self.kwargs)
