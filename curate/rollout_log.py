"""The rollout log, in one place: its schema, its writer, its reader and its DuckDB view.

One Parquet row per response. Parts land under
``RUN/rollouts/part-<step:08d>-<seq:04d>.parquet``; each is written to a temp
name and renamed, so a crash never leaves a torn file and DuckDB can read a run
while it trains::

    SELECT step, avg(reward) FROM read_parquet('RUN/rollouts/*.parquet') GROUP BY step

Who uses what: the trainer and the TRL / verl plugins write with
`RolloutWriter`; `curate.importers` maps foreign logs onto `ROLLOUT_SCHEMA` and
reads ours with `read_parts`; `pipelines.query` (``thresher query``, ``stats``,
``report``) opens them with `readable_parts` + `create_view`; `thresher logs
import` writes an imported log with `RolloutWriter`.

>>> import tempfile, duckdb
>>> run = tempfile.mkdtemp()
>>> part = RolloutWriter(run, run_id="demo").write({"step": [0], "sample_id": ["a"],
...     "response_idx": [0], "prompt": ["1+1="], "response": ["2"], "reward": [1.0]})
>>> part.name
'part-00000000-0000.parquet'
>>> read_parts([part])[0].schema == ROLLOUT_SCHEMA
True
>>> con = duckdb.connect()
>>> create_view(con, readable_parts([part]))
>>> con.sql("SELECT count(*) FROM rollouts").fetchall()
[(1,)]
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from curate.errors import DataError
from curate.io import write_parquet_atomic
from curate.schema import IMAGE_TYPE, conform

ROLLOUT_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("step", pa.int64()),
        ("sample_id", pa.string()),
        ("group", pa.int64()),
        ("response_idx", pa.int64()),
        ("domain", pa.string()),
        ("prompt", pa.string()),
        ("response", pa.string()),
        ("reward", pa.float64()),
        ("correct", pa.bool_()),
        ("format_ok", pa.bool_()),
        ("advantage", pa.float64()),
        ("prompt_tokens", pa.int64()),
        ("response_tokens", pa.int64()),
        ("sampler", pa.string()),
        ("p_estimate", pa.float64()),
        ("score", pa.float64()),
        ("policy_version", pa.int64()),
        ("ts", pa.timestamp("us", tz="UTC")),
        # whether the response's group went into the policy update (fill mode drops
        # zero-variance groups and any beyond the batch); null where unknown (imports)
        ("kept", pa.bool_()),
        # the prompt's images as the Sample has them (path + sha256), never pixels;
        # empty for a text prompt, null where unknown (imports, older logs)
        ("images", pa.list_(IMAGE_TYPE)),
    ]
)

# Columns that must be present (non-null) in every rollout row; the rest may be null.
ROLLOUT_REQUIRED = ("run_id", "step", "sample_id", "response_idx", "prompt", "response", "reward")

PARTS = "rollouts"  # RUN/rollouts/*.parquet


class RolloutLogError(DataError):
    """A rollout part that does not fit the schema (names the file and the column)."""


# ---------------------------------------------------------------------------- writer
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
        self.dir = Path(run_dir) / PARTS
        self.dir.mkdir(parents=True, exist_ok=True)
        self.run_id = run_id

    def part_path(self, step: int, seq: int = 0) -> Path:
        """Where the part of `step` (and sequence number `seq`) goes."""
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


# ---------------------------------------------------------------------------- reader
def part_files(run_dir: str | os.PathLike) -> list[Path]:
    """The parts of one run, in step order."""
    return sorted((Path(run_dir) / PARTS).glob("*.parquet"))


def _kind(t: pa.DataType) -> str:
    if pa.types.is_list(t) or pa.types.is_large_list(t):  # Parquet renames the item field
        return f"list<{_kind(t.value_type)}>"
    for name, test in (("number", lambda x: pa.types.is_integer(x) or pa.types.is_floating(x)),
                       ("string", lambda x: pa.types.is_string(x) or pa.types.is_large_string(x)
                        or (pa.types.is_dictionary(x) and pa.types.is_string(x.value_type))),
                       ("boolean", pa.types.is_boolean), ("timestamp", pa.types.is_timestamp)):
        if test(t):
            return name
    return str(t)


def check_part(path: str | os.PathLike, schema: pa.Schema) -> None:
    """Raise RolloutLogError unless a part's schema has the required columns, each of
    the schema's kind (an int32 step or an int reward is fine, a string reward is not)."""
    missing = [c for c in ROLLOUT_REQUIRED if c not in schema.names]
    if missing:
        raise RolloutLogError(f"{path}: missing column {missing[0]!r}; rollout parts need "
                              f"{', '.join(ROLLOUT_REQUIRED)}")
    for field in ROLLOUT_SCHEMA:
        if field.name in schema.names:
            got = schema.field(field.name).type
            if _kind(got) != _kind(field.type):
                raise RolloutLogError(f"{path}: column {field.name!r}: expected {field.type}, got {got}")


def _warn_skip(path: Path, exc: BaseException) -> None:
    warnings.warn(f"{path}: skipped an unreadable part ({type(exc).__name__}: {exc}); "
                  "the other parts are read", UserWarning, stacklevel=4)


def readable_parts(files: Sequence[str | os.PathLike],
                   on_unreadable: Callable[[Path, BaseException], None] = _warn_skip) -> list[Path]:
    """The parts whose footer reads and whose schema fits (`check_part`); a part whose
    footer cannot be read (a truncated file) goes to `on_unreadable` and is left out."""
    ok = []
    for f in map(Path, files):
        try:
            schema = pq.ParquetFile(f).schema_arrow
        except Exception as exc:
            on_unreadable(f, exc)
            continue
        check_part(f, schema)
        ok.append(f)
    return ok


def read_parts(files: Sequence[str | os.PathLike],
               on_unreadable: Callable[[Path, BaseException], None] = _warn_skip) -> list[pa.Table]:
    """Each readable part as a table with exactly `ROLLOUT_SCHEMA`."""
    tables = []
    for f in readable_parts(files, on_unreadable):
        try:
            table = pq.read_table(f)
        except Exception as exc:  # a footer that reads over a torn body
            on_unreadable(f, exc)
            continue
        try:
            tables.append(conform(table, ROLLOUT_SCHEMA))
        except ValueError as exc:
            raise RolloutLogError(f"{f}: {exc}") from exc
    return tables


# ----------------------------------------------------------------------------- view
def sql_list(files: Sequence[Path]) -> str:
    """Files as a DuckDB list literal, quotes escaped."""
    return "[" + ", ".join("'" + str(f).replace("'", "''") + "'" for f in files) + "]"


_DUCK_TYPES = {"bool": "BOOLEAN", "int64": "BIGINT", "double": "DOUBLE", "string": "VARCHAR",
               str(pa.list_(IMAGE_TYPE)): "STRUCT(path VARCHAR, sha256 VARCHAR)[]"}


def create_view(con: Any, files: Sequence[str | os.PathLike], name: str = "rollouts") -> None:
    """Create the DuckDB view `name` over rollout parts (columns united by name).

    Columns the schema gained later (e.g. `kept`, `images`) read as null in older logs,
    so every query can name every schema column.
    """
    src = f"read_parquet({sql_list([Path(f) for f in files])}, union_by_name = true)"
    have = {r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {src}").fetchall()}
    extra = "".join(f', CAST(NULL AS {_DUCK_TYPES[str(f.type)]}) AS "{f.name}"'
                    for f in ROLLOUT_SCHEMA if f.name not in have and str(f.type) in _DUCK_TYPES)
    con.execute(f"CREATE VIEW {name} AS SELECT *{extra} FROM {src}")
