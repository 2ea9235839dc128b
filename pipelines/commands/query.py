"""`thresher query RUN_OR_GLOB "SQL"` / `--named NAME`: DuckDB over rollout logs and stats.

Views: `rollouts` (every RUN/rollouts/*.parquet) and `stats` (every
RUN/stats/*.parquet snapshot, with snapshot_step and run_dir). Output is a rich
table, or CSV / JSON / Parquet with `--format` and `--out`.

    thresher query runs/quickstart --named reward_curve
    thresher query 'runs/*' "SELECT run_id, avg(reward) FROM rollouts GROUP BY 1" --format csv
    thresher query runs/quickstart --named pass_rates --format parquet --out rates.parquet
    thresher query --list                       # the named queries and their SQL
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from pipelines.query import NAMED_QUERIES

    parser.add_argument("run", nargs="?", help="a run folder, a glob of run folders ('runs/*'), ...")
    parser.add_argument("sql", nargs="?", help="SQL over the views `rollouts` and `stats`")
    parser.add_argument("--named", choices=NAMED_QUERIES, help="run a named query instead of SQL")
    parser.add_argument("--show-sql", action="store_true", help="print the SQL of --named and exit")
    parser.add_argument("--list", action="store_true", help="list the named queries with their SQL")
    parser.add_argument("--format", choices=("table", "csv", "json", "parquet"), default="table")
    parser.add_argument("--out", help="write the result to this file (default: stdout)")
    parser.add_argument("--limit", type=int, default=50, help="rows shown in table format (default 50)")


def run(args: argparse.Namespace) -> int:
    from pipelines.cli import UserError
    from pipelines.commands import open_runs
    from pipelines.query import NAMED_QUERIES, named_query

    if args.list:
        for name in NAMED_QUERIES:
            print(f"-- {name}\n{named_query(name)}")
        return 0
    if args.named and args.show_sql:
        print(named_query(args.named))
        return 0
    if not args.run:
        raise UserError("give a run folder or glob (thresher query RUN \"SQL\" or --named NAME)")
    if bool(args.sql) == bool(args.named):
        raise UserError("give exactly one of SQL or --named NAME")
    if args.format == "parquet" and not args.out:
        raise UserError("--format parquet needs --out FILE")
    sql = named_query(args.named) if args.named else args.sql
    lake = open_runs(args.run)
    try:
        table = lake.sql(sql).arrow()
    except Exception as exc:  # duckdb errors name the column or the syntax problem
        raise UserError(f"query failed: {exc}") from exc
    if hasattr(table, "read_all"):
        table = table.read_all()
    write_table(table, args.format, args.out, limit=args.limit)
    return 0


def write_table(table, fmt: str, out: str | None, *, limit: int = 50) -> None:
    """Print or write an Arrow table as a rich table, CSV, JSON (records) or Parquet."""
    import io
    import json

    import polars as pl

    from curate.io import write_parquet_atomic, write_text_atomic

    df = pl.from_arrow(table)
    if fmt == "parquet":
        write_parquet_atomic(table, out)
        print(f"wrote {df.height} rows to {out}", file=sys.stderr)
        return
    if fmt in ("csv", "json"):
        if fmt == "csv":
            buf = io.StringIO()
            df.write_csv(buf)
            text = buf.getvalue()
        else:
            text = json.dumps(df.to_dicts(), default=str, indent=1) + "\n"
        if out:
            write_text_atomic(text, out)
            print(f"wrote {df.height} rows to {out}", file=sys.stderr)
        else:
            sys.stdout.write(text)
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(show_lines=False, caption=f"{df.height} rows" + (f", first {limit} shown" if df.height > limit else ""))
    for name in df.columns:
        t.add_column(name, overflow="fold", max_width=60)
    for row in df.head(limit).iter_rows():
        t.add_row(*(_fmt(v) for v in row))
    Console().print(t)


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    s = str(v)
    return s if len(s) <= 120 else s[:117] + "..."
