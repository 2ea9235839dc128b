"""pipelines.query and `thresher query`: views, named queries, many runs, torn parts."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.from_logs import pass_rates
from pipelines.cli import main
from pipelines.demo_run import synthetic_run
from pipelines.query import NAMED_QUERIES, LakeError, QueryWarning, connect, named_query, run_named


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    synthetic_run(root / "a", steps=8, n_prompts=80, batch=8, seed=1, stats_every=4)
    synthetic_run(root / "b", steps=5, n_prompts=80, batch=8, seed=2, stats_every=4)
    return root


def rollouts_df(run: Path) -> pl.DataFrame:
    return pl.read_parquet(sorted((run / "rollouts").glob("*.parquet")))


def q(lake, sql_or_rel) -> pl.DataFrame:
    rel = lake.sql(sql_or_rel) if isinstance(sql_or_rel, str) else sql_or_rel
    t = rel.arrow()
    return pl.from_arrow(t.read_all() if hasattr(t, "read_all") else t)


def test_named_queries_are_plain_sql_files():
    for name in NAMED_QUERIES:
        text = named_query(name)
        assert "FROM rollouts" in text and text.lstrip().startswith("--")
    sql_dir = Path(__file__).resolve().parents[1] / "pipelines" / "queries"
    assert sorted(p.stem for p in sql_dir.glob("*.sql")) == sorted(NAMED_QUERIES)


def test_every_named_query_runs(runs):
    lake = connect(runs / "a")
    for name in NAMED_QUERIES:
        df = q(lake, run_named(lake, name))
        assert df.height > 0 or name == "stuck_prompts", name


def test_reward_curve_and_informative_ratio_match_polars(runs):
    lake = connect(runs / "a")
    raw = rollouts_df(runs / "a")
    curve = q(lake, run_named(lake, "reward_curve")).sort("step")
    want = raw.group_by("step").agg(pl.col("reward").mean(), pl.col("correct").cast(pl.Float64).mean()).sort("step")
    assert curve["reward_mean"].to_list() == pytest.approx(want["reward"].to_list())
    assert curve["accuracy"].to_list() == pytest.approx(want["correct"].to_list())
    info = q(lake, run_named(lake, "informative_ratio")).sort("step")
    g = raw.group_by("step", "group").agg((pl.col("reward").min() < pl.col("reward").max()).alias("inf"))
    want = g.group_by("step").agg(pl.col("inf").cast(pl.Float64).mean()).sort("step")
    assert info["informative_ratio"].to_list() == pytest.approx(want["inf"].to_list())


def _write_groups(run: Path, groups: list[tuple[int, str, int, int]], kept: bool | None = None) -> None:
    """(step, prompt, correct, responses) per group, one part per step."""
    from curate.rollout_log import RolloutWriter

    w = RolloutWriter(run, run_id=run.name)
    for step in sorted({g[0] for g in groups}):
        w.write(pa.Table.from_pylist([
            {"step": step, "sample_id": sid, "group": gi, "response_idx": i, "prompt": sid,
             "response": "x", "reward": float(i < k), "correct": i < k, "kept": kept,
             "response_tokens": 2 + i + step}
            for gi, (_, sid, k, n) in enumerate(g for g in groups if g[0] == step)
            for i in range(n)]))


def test_revisits_query_classes_each_group_by_the_prompts_last_ones(tmp_path):
    # prompt a: 0/4, 0/4, 0/4, 3/4 -> first visit, unsolved once, unsolved twice, unsolved twice
    # prompt b: 4/4, 4/4, 2/4      -> first visit, solved, solved;  prompt c: 1/4, 0/4 -> first, mixed
    _write_groups(tmp_path / "r", [(1, "a", 0, 4), (2, "a", 0, 4), (3, "a", 0, 4), (4, "a", 3, 4),
                                   (1, "b", 4, 4), (3, "b", 4, 4), (4, "b", 2, 4),
                                   (2, "c", 1, 4), (3, "c", 0, 4)])
    lake = connect(tmp_path / "r")
    got = {r["last"]: (r["groups"], r["informative"])
           for r in q(lake, run_named(lake, "revisits")).iter_rows(named=True)}
    assert got == {"first visit": (3, pytest.approx(1 / 3)), "unsolved once": (1, 0.0),
                   "unsolved twice": (2, 0.5), "solved": (2, 0.5), "mixed": (1, 0.0)}


def test_bench_polars_twins_match_every_named_query(runs, tmp_path):
    """bench/query.py times each named query against the same query in polars: the twins
    exist for every named query and give the same table (on a plain log and a fill-mode one)."""
    import importlib.util

    from polars.testing import assert_frame_equal

    spec = importlib.util.spec_from_file_location(
        "bench_query", Path(__file__).resolve().parents[1] / "bench" / "query.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    _write_groups(tmp_path / "fill", [(s, f"p{i}", (s * i) % 5, 4) for s in range(1, 7) for i in range(6)],
                  kept=True)
    for run in (runs / "a", tmp_path / "fill"):
        files = sorted(str(p) for p in (run / "rollouts").glob("*.parquet"))
        twins = bench.polars_queries(files)
        assert sorted(twins) == sorted(NAMED_QUERIES)
        lake = connect(run)
        for name in NAMED_QUERIES:
            want = q(lake, run_named(lake, name))
            got = twins[name]().select(want.columns)
            assert_frame_equal(got.sort(want.columns), want.sort(want.columns), check_dtypes=False,
                               check_exact=False, rel_tol=1e-9)


def test_pass_rates_query_agrees_with_curation(runs):
    lake = connect(runs / "a")
    sql = q(lake, run_named(lake, "pass_rates")).sort("sample_id")
    lib = pass_rates(rollouts_df(runs / "a")).sort("sample_id")
    assert sql["sample_id"].to_list() == lib["sample_id"].to_list()
    assert sql["pass_rate"].to_list() == pytest.approx(lib["pass_rate"].to_list())
    assert sql["n"].to_list() == lib["n"].to_list()


def test_many_runs_by_glob_and_stats_view(runs):
    lake = connect(str(runs / "*"))
    per_run = dict(q(lake, "SELECT run_id, count(*) AS n FROM rollouts GROUP BY 1").iter_rows())
    assert per_run == {"a": rollouts_df(runs / "a").height, "b": rollouts_df(runs / "b").height}
    snaps = q(lake, "SELECT run_dir, list(DISTINCT snapshot_step ORDER BY snapshot_step) AS s FROM stats GROUP BY 1")
    got = {Path(r).name: s for r, s in snaps.iter_rows()}
    assert got == {"a": [0, 3, 7], "b": [0, 3, 4]}


def test_truncated_part_is_skipped_not_hiding_the_rest(tmp_path):
    run = synthetic_run(tmp_path / "r", steps=4, n_prompts=40, batch=4)
    parts = sorted((run / "rollouts").glob("*.parquet"))
    total = rollouts_df(run).height
    torn_rows = pq.read_metadata(parts[1]).num_rows
    parts[1].write_bytes(parts[1].read_bytes()[:100])
    with pytest.warns(QueryWarning, match=parts[1].name):
        lake = connect(run)
    assert q(lake, "SELECT count(*) AS n FROM rollouts")["n"][0] == total - torn_rows
    assert lake.skipped[0]["file"].endswith(parts[1].name)


def test_part_missing_a_column_names_file_and_column(tmp_path):
    d = tmp_path / "r" / "rollouts"
    d.mkdir(parents=True)
    pq.write_table(pa.table({"run_id": ["x"], "step": [0], "sample_id": ["a"], "response_idx": [0],
                             "prompt": ["p"], "response": ["r"]}), d / "part-00000000-0000.parquet")
    with pytest.raises(LakeError, match=r"part-00000000-0000\.parquet: missing column 'reward'"):
        connect(tmp_path / "r")
    with pytest.raises(LakeError, match="no run folder"):
        connect(tmp_path / "nothing-here")


def test_cli_query_formats(runs, tmp_path, capsys):
    run = str(runs / "a")
    assert main(["query", run, "--named", "reward_curve", "--format", "csv"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("run_id,step,reward_mean,accuracy") and len(lines) == 1 + 8
    assert main(["query", run, "SELECT count(*) AS n FROM rollouts", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"n": rollouts_df(runs / "a").height}]
    out = tmp_path / "rates.parquet"
    assert main(["query", run, "--named", "pass_rates", "--format", "parquet", "--out", str(out)]) == 0
    assert pq.read_table(out).num_rows == rollouts_df(runs / "a")["sample_id"].n_unique()
    assert main(["query", run, "--named", "domain_curves"]) == 0
    assert "domain_curves" not in capsys.readouterr().err
    assert main(["query", run, "SELECT nope FROM rollouts"]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["query", "--named", "stuck_prompts", "--show-sql"]) == 0
    assert "HAVING" in capsys.readouterr().out


def test_cli_query_warns_about_torn_part(tmp_path, capsys):
    run = synthetic_run(tmp_path / "r", steps=3, n_prompts=40, batch=4)
    part = sorted((run / "rollouts").glob("*.parquet"))[0]
    part.write_bytes(b"garbage")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["query", str(run), "SELECT count(*) AS n FROM rollouts", "--format", "csv"]) == 0
    cap = capsys.readouterr()
    assert part.name in cap.err and cap.out.splitlines()[1] == str(2 * 4 * 8)


def test_part_with_a_wrong_type_names_file_and_column(tmp_path):
    d = tmp_path / "r" / "rollouts"
    d.mkdir(parents=True)
    pq.write_table(pa.table({"run_id": ["x"], "step": pa.array([0], pa.int32()), "sample_id": ["a"],
                             "response_idx": [0], "prompt": ["p"], "response": ["r"], "reward": ["high"]}),
                   d / "part-00000000-0000.parquet")
    with pytest.raises(LakeError, match=r"part-00000000-0000\.parquet: column 'reward': expected double, got string"):
        connect(tmp_path / "r")
