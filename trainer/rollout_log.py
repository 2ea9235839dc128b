"""The rollout log: one Parquet row per response, written in atomic parts.

Parts land under `RUN/rollouts/part-<step:08d>-<seq:04d>.parquet`. Each is
written to a temp name and renamed, so a crash never leaves a torn file and
DuckDB can read a run while it trains:

    SELECT step, avg(reward) FROM read_parquet('RUN/rollouts/*.parquet') GROUP BY step
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from curate.io import write_parquet_atomic
from curate.schema import ROLLOUT_REQUIRED, ROLLOUT_SCHEMA, conform


class RolloutWriter:
    """Append-only writer of rollout-log parts for one run.

    >>> import tempfile
    >>> w = RolloutWriter(tempfile.mkdtemp(), run_id="demo")
    >>> p = w.write({"step": [0], "sample_id": ["a"], "response_idx": [0],
    ...              "prompt": ["1+1="], "response": ["2"], "reward": [1.0]})
    >>> p.name
    'part-00000000-0000.parquet'
    """

    def __init__(self, run_dir: str | os.PathLike, run_id: str) -> None:
        self.dir = Path(run_dir) / "rollouts"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.run_id = run_id

    def part_path(self, step: int, seq: int = 0) -> Path:
        return self.dir / f"part-{step:08d}-{seq:04d}.parquet"

    def write(self, rows: Mapping[str, Sequence[Any]] | pa.Table, seq: int = 0) -> Path:
        """Write one part (normally one training step). Re-writing a step replaces it,
        so a resumed run that repeats a step never duplicates its rows."""
        table = rows if isinstance(rows, pa.Table) else pa.table(dict(rows))
        n = table.num_rows
        if "run_id" not in table.column_names:
            table = table.append_column("run_id", pa.array([self.run_id] * n, pa.string()))
        if "ts" not in table.column_names:
            now = datetime.now(UTC)
            table = table.append_column("ts", pa.array([now] * n, pa.timestamp("us", tz="UTC")))
        table = conform(table, ROLLOUT_SCHEMA)
        for name in ROLLOUT_REQUIRED:
            if table.column(name).null_count:
                raise ValueError(f"rollout log: column {name!r} has nulls; it is required")
        steps = table.column("step").unique().to_pylist()
        step = int(steps[0]) if len(steps) == 1 else int(min(steps))
        return write_parquet_atomic(table, self.part_path(step, seq), compression="zstd")
