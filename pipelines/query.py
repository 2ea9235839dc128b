"""DuckDB over rollout logs and statistics snapshots of one or many runs.

`connect("runs/*")` opens an in-memory DuckDB with two views:

- ``rollouts``: every ``RUN/rollouts/*.parquet`` (curate.rollout_log, which owns the
  schema, the writer, the reader and this view);
- ``stats``: every ``RUN/stats/stats-<step>.parquet`` snapshot (DESIGN.md "Sample
  statistics" columns) plus ``snapshot_step`` (from the file name) and ``run_dir``.

A part whose footer cannot be read (a truncated file) is skipped with a warning
naming it (`Lake.skipped`); the other parts are still queried.

Named queries live as plain SQL in ``pipelines/queries/<name>.sql`` so users can
copy them: `named_query("pass_rates")` returns the text, `run_named(con, name)` runs it.

>>> import tempfile, pathlib
>>> from curate.rollout_log import RolloutWriter
>>> run = pathlib.Path(tempfile.mkdtemp())
>>> _ = RolloutWriter(run, "demo").write({"step": [0, 0], "sample_id": ["a", "a"],
...     "response_idx": [0, 1], "prompt": ["1+1="] * 2, "response": ["2", "3"],
...     "reward": [1.0, 0.0], "correct": [True, False]})
>>> lake = connect(run)
>>> lake.sql("SELECT count(*) AS n FROM rollouts").fetchall()
[(2,)]
>>> run_named(lake, "informative_ratio").fetchall()[0][-1]
1.0
"""

from __future__ import annotations

import glob as globlib
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from curate import rollout_log
from curate.errors import DataError

NAMED_QUERIES = ("pass_rates", "informative_ratio", "reward_curve", "domain_curves",
                 "length_vs_reward", "stuck_prompts", "calibration", "rollout_cost",
                 "revisits")

# Columns of an empty `stats` view (DESIGN.md "Sample statistics"), so queries still bind.
_STATS_EMPTY = """
SELECT CAST(NULL AS VARCHAR) AS sample_id, CAST(NULL AS VARCHAR) AS domain,
       CAST(NULL AS DOUBLE) AS alpha, CAST(NULL AS DOUBLE) AS beta, CAST(NULL AS BIGINT) AS n_seen,
       CAST(NULL AS BIGINT) AS n_correct, CAST(NULL AS BIGINT) AS last_step,
       CAST(NULL AS DOUBLE) AS reward_mean, CAST(NULL AS DOUBLE) AS reward_var,
       CAST(NULL AS DOUBLE) AS len_mean, CAST(NULL AS DOUBLE) AS diversity,
       CAST(NULL AS DOUBLE) AS score, CAST(NULL AS BIGINT) AS snapshot_step,
       CAST(NULL AS VARCHAR) AS run_dir
WHERE false
"""


class LakeError(DataError):
    """No run, no readable rollout part, or a part missing a required column."""


class QueryWarning(UserWarning):
    """A part file was skipped."""


@dataclass
class Lake:
    """A DuckDB connection with `rollouts` and `stats` views, and what went into them."""

    con: duckdb.DuckDBPyConnection
    runs: list[Path]
    rollout_files: list[Path]
    stats_files: list[Path]
    skipped: list[dict] = field(default_factory=list)

    def sql(self, query: str) -> duckdb.DuckDBPyRelation:
        return self.con.sql(query)


def resolve_runs(run_or_glob: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """Run folders from a folder, a glob of folders (``runs/*``) or a list of those."""
    items = [run_or_glob] if isinstance(run_or_glob, str | os.PathLike) else list(run_or_glob)
    runs: list[Path] = []
    for item in items:
        s = str(item)
        matches = sorted(globlib.glob(s)) if any(c in s for c in "*?[") else [s]
        for m in matches:
            p = Path(m)
            if p.is_dir() and ((p / "rollouts").is_dir() or (p / "stats").is_dir()):
                runs.append(p)
    if not runs:
        raise LakeError(f"{run_or_glob}: no run folder (a folder with rollouts/ or stats/) matches")
    return runs


def _skipper(skipped: list[dict]):
    def skip(f: Path, exc: BaseException) -> None:
        skipped.append({"file": str(f), "error": f"{type(exc).__name__}: {exc}"})
        warnings.warn(f"{f}: skipped an unreadable part ({exc}); querying the others",
                      QueryWarning, stacklevel=4)
    return skip


def _readable_stats(files: list[Path], skipped: list[dict]) -> list[Path]:
    ok, skip = [], _skipper(skipped)
    for f in files:
        try:
            pq.read_schema(f)
        except Exception as exc:
            skip(f, exc)
            continue
        ok.append(f)
    return ok


def connect(run_or_glob: str | os.PathLike | Sequence[str | os.PathLike], *, threads: int | None = None
            ) -> Lake:
    """Open the rollout logs and stats snapshots of one or many runs as DuckDB views."""
    runs = resolve_runs(run_or_glob)
    skipped: list[dict] = []
    try:
        rfiles = rollout_log.readable_parts([f for r in runs for f in rollout_log.part_files(r)],
                                            _skipper(skipped))
    except rollout_log.RolloutLogError as exc:
        raise LakeError(str(exc)) from None
    sfiles = _readable_stats([f for r in runs for f in sorted((r / "stats").glob("*.parquet"))], skipped)
    con = duckdb.connect(":memory:")
    con.execute("SET parquet_metadata_cache = true")  # repeated queries skip re-reading every footer
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    if rfiles:
        rollout_log.create_view(con, rfiles)
    else:
        raise LakeError(f"{', '.join(map(str, runs))}: no readable rollout part under rollouts/")
    if sfiles:
        con.execute(
            "CREATE VIEW stats AS SELECT * EXCLUDE (filename), "
            r"CAST(regexp_extract(filename, 'stats-(\d+)\.parquet$', 1) AS BIGINT) AS snapshot_step, "
            "regexp_extract(filename, '^(.*)/stats/[^/]*$', 1) AS run_dir "
            f"FROM read_parquet({rollout_log.sql_list(sfiles)}, union_by_name = true, filename = true)")
    else:
        con.execute(f"CREATE VIEW stats AS {_STATS_EMPTY}")
    return Lake(con=con, runs=runs, rollout_files=rfiles, stats_files=sfiles, skipped=skipped)


def named_query(name: str) -> str:
    """The SQL text of a named query (pipelines/queries/<name>.sql)."""
    if name not in NAMED_QUERIES:
        raise KeyError(f"unknown named query {name!r}; expected one of {', '.join(NAMED_QUERIES)}")
    return resources.files("pipelines.queries").joinpath(f"{name}.sql").read_text(encoding="utf-8")


def run_named(lake: Lake | duckdb.DuckDBPyConnection, name: str) -> duckdb.DuckDBPyRelation:
    """Run a named query on a lake (or any connection with a `rollouts` view)."""
    con = lake.con if isinstance(lake, Lake) else lake
    return con.sql(named_query(name))
