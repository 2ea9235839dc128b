"""curate.from_logs: pass rates, routing, self-distillation, preference pairs, the whole loop."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

from curate.from_logs import (
    ROUTES,
    build_from_log,
    filter_by_pass_rate,
    pass_at_k,
    pass_rates,
    preference_pairs,
    route_prompts,
    self_distill,
    wilson_interval,
)
from curate.importers import read_rollouts

MATH_COT = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "Qwen2.5-Math" / "math_cot_100.jsonl"
FIX = Path(__file__).parent / "fixtures" / "logs"


def random_log(seed: int, prompts: int = 60, max_n: int = 12) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(prompts):
        n = int(rng.integers(1, max_n + 1))
        p = rng.choice([0.0, 1.0, rng.random()])
        for j in range(n):
            ok = bool(rng.random() < p)
            fmt = bool(rng.random() > 0.2)
            rows.append({"sample_id": f"s{i}", "prompt": f"prompt {i}", "domain": "d",
                         "response": (f"reasoning {j} {rng.integers(0, 3)} \\boxed{{{int(ok)}}}" if fmt else f"hmm {j}"),
                         "reward": float(ok) + rng.random() * 0.1, "correct": ok, "format_ok": fmt,
                         "response_tokens": int(rng.integers(5, 50))})
    return pl.DataFrame(rows)


def test_pass_rates_agree_with_direct_computation():
    log = random_log(0)
    got = pass_rates(log, k=(1, 4)).sort("sample_id")
    for r in got.iter_rows(named=True):
        sub = log.filter(pl.col("sample_id") == r["sample_id"])
        n, c = sub.height, int(sub["correct"].sum())
        assert r["n"] == n and r["n_correct"] == c
        assert r["pass_rate"] == pytest.approx(c / n)
        assert r["reward_mean"] == pytest.approx(sub["reward"].mean())
        for k in (1, 4):
            want = None if n < k else 1 - math.comb(n - c, k) / math.comb(n, k)
            assert (r[f"pass_at_{k}"] is None) if want is None else r[f"pass_at_{k}"] == pytest.approx(want)
        assert r["ci_low"] <= r["pass_rate"] <= r["ci_high"]


def test_pass_rates_on_math_cot_100():
    if not MATH_COT.exists():
        pytest.skip(f"{MATH_COT} absent")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = read_rollouts(MATH_COT)
    rates = pass_rates(t)
    lines = [json.loads(x) for x in MATH_COT.read_text().splitlines()]
    direct = sorted(sum(r["score"]) / len(r["score"]) for r in lines)
    assert sorted(rates["pass_rate"].to_list()) == pytest.approx(direct)
    assert rates["pass_at_8"].to_list() == [0.0 if p == 0 else 1.0 for p in rates["pass_rate"].to_list()]


def test_wilson_and_pass_at_k_values():
    lo, hi = wilson_interval(np.array([0, 8, 3]), np.array([8, 8, 8]))
    assert lo[0] == 0 and hi[1] == 1 and 0 < lo[2] < 3 / 8 < hi[2] < 1
    assert lo[0] < hi[0] == pytest.approx(0.3244, abs=1e-3)  # 0/8 still leaves ~32% plausible
    big = pass_at_k(np.array([2000]), np.array([10]), 100)
    assert big[0] == pytest.approx(1 - math.comb(1990, 100) / math.comb(2000, 100), rel=1e-9)
    assert np.isnan(pass_at_k(np.array([3]), np.array([1]), 4)[0])


@pytest.mark.parametrize("seed", range(4))
def test_routing_puts_each_prompt_in_exactly_one_bucket(seed):
    log = random_log(seed)
    routed = route_prompts(log, distill_below=0.5, min_n=3)
    assert routed["sample_id"].n_unique() == routed.height == log["sample_id"].n_unique()
    assert set(routed["route"]) <= set(ROUTES) and routed["route"].null_count() == 0
    for r in routed.iter_rows(named=True):
        p, n = r["pass_rate"], r["n"]
        want = ("insufficient" if n < 3 else "expert" if p == 0 else "solved" if p == 1
                else "distill" if p < 0.5 else "rl")
        assert r["route"] == want


def test_route_thresholds_are_checked():
    with pytest.raises(ValueError, match="never_max"):
        route_prompts(random_log(0), never_max=0.8, always_min=0.5)


def test_filter_by_pass_rate_counts_drops():
    rates = pass_rates(random_log(1))
    out = filter_by_pass_rate(rates, low=0.1, high=0.9, min_n=2)
    assert out.kept.height + out.dropped.height == rates.height
    assert out.kept["pass_rate"].is_between(0.1, 0.9, closed="none").all()
    drops = out.drops_by_reason()
    assert drops.get("too_few_rollouts", 0) == rates.filter(pl.col("n") < 2).height


@pytest.mark.parametrize("seed", range(5))
def test_dpo_pairs_never_pair_two_correct_or_two_incorrect(seed):
    log = random_log(seed)
    pairs = preference_pairs(log, max_pairs_per_prompt=3, seed=seed)
    assert pairs.height > 0
    by_resp = {(r["sample_id"], r["response"]): r for r in log.iter_rows(named=True)}
    for p in pairs.iter_rows(named=True):
        c, r = by_resp[(p["sample_id"], p["chosen"])], by_resp[(p["sample_id"], p["rejected"])]
        assert c["correct"] and c["format_ok"] and not r["correct"]
        assert c["prompt"] == r["prompt"] == p["prompt"]
    assert pairs.group_by("sample_id").len()["len"].max() <= 3
    assert pairs.select("sample_id", "chosen").is_unique().all()


def test_self_distill_rejection_sampling_and_dedup():
    log = pl.DataFrame({
        "sample_id": ["a"] * 6 + ["b"] * 2, "prompt": ["p"] * 6 + ["q"] * 2,
        "response": ["x \\boxed{1} same trace here", "x \\boxed{1} same trace here!", "other way \\boxed{1}",
                     "wrong \\boxed{2}", "no box at all", "very " * 50 + "\\boxed{1}", "b1 \\boxed{3}", "b2"],
        "reward": [0.9, 0.95, 0.8, 0.0, 1.0, 1.0, 1.0, 0.0],
        "correct": [True, True, True, False, True, True, True, False],
    })
    out = self_distill(log, ["a"], best_of=5, max_tokens=40)
    kept = out.kept
    assert set(kept["sample_id"]) == {"a"} and kept.columns[:4] == ["sample_id", "prompt", "completion", "reward"]
    assert kept["completion"].to_list() == ["x \\boxed{1} same trace here!", "other way \\boxed{1}"]
    assert out.drops_by_reason() == {"bad_format": 1, "incorrect": 1, "near_duplicate": 1, "not_selected": 2,
                                     "too_long": 1}
    assert out.kept.height + out.dropped.height == log.height  # nothing lost silently
    best1 = self_distill(log, ["a"], best_of=1)
    assert best1.kept["reward"].to_list() == [1.0]  # best-of-n by reward


def test_math_cot_100_pipeline_builds_sft_and_preference_sets(tmp_path):
    if not MATH_COT.exists():
        pytest.skip(f"{MATH_COT} absent")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = read_rollouts(MATH_COT)
    from curate.importers import import_info
    m = build_from_log(t, tmp_path, source=import_info(t))
    sft = pq.read_table(tmp_path / "sft.parquet")
    pref = pq.read_table(tmp_path / "preference.parquet")
    assert m["sft"]["rows"] == sft.num_rows > 0 and m["preference"]["pairs"] == pref.num_rows > 0
    assert pref.column_names == ["prompt", "chosen", "rejected"]
    assert sum(m["routes"].values()) == m["input"]["prompts"] == 100
    # 86 always solved, 4 never solved, 10 in between (counted from the raw file)
    assert m["routes"]["solved"] == 86 and m["routes"]["expert"] == 4 and m["routes"]["distill"] == 10
    assert len((tmp_path / "expert_queue.jsonl").read_text().splitlines()) == 4
    assert m["input"]["import"]["derived_sample_id"] is True
    on_disk = json.loads((tmp_path / "manifest.json").read_text())
    assert on_disk["sft"]["rows"] == sft.num_rows and on_disk["preference"]["pairs"] == pref.num_rows
    # the preference file is what TRL's DPOTrainer reads: plain strings, no conversational rows
    from datasets import Dataset
    from trl.data_utils import is_conversational
    ds = Dataset.from_parquet(str(tmp_path / "preference.parquet"))
    assert ds.column_names == ["prompt", "chosen", "rejected"] and not is_conversational(ds[0])


def test_cli_logs_import_then_curate(tmp_path, capsys):
    from pipelines.cli import main

    assert main(["logs", "import", str(FIX / "verl"), "--out", str(tmp_path / "run")]) == 0
    assert sorted(p.name for p in (tmp_path / "run" / "rollouts").iterdir()) == [
        "part-00000001-0000.parquet", "part-00000002-0000.parquet"]
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["import"]["derived_sample_id"] is True
    assert main(["logs", "curate", str(tmp_path / "run"), "--out", str(tmp_path / "cur"), "--min-n", "2"]) == 0
    m = json.loads((tmp_path / "cur" / "manifest.json").read_text())
    assert sum(m["routes"].values()) == 3 and m["preference"]["pairs"] >= 1
    assert main(["logs", "import", str(tmp_path / "missing"), "--out", str(tmp_path / "x")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_cli_logs_import_quarantines_torn_lines(tmp_path):
    from pipelines.cli import main

    src = tmp_path / "log.jsonl"
    src.write_text(json.dumps({"prompt": "p", "response": "r", "reward": 1}) + "\n{torn\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["logs", "import", str(src), "--out", str(tmp_path / "run")]) == 0
    q = pq.read_table(tmp_path / "run" / "quarantine" / "import.parquet").to_pylist()
    assert q[0]["line"] == 2 and q[0]["text"].startswith("{torn") and q[0]["file"].endswith("log.jsonl")
