"""curate.mixture: propose/fit/optimize, input errors, and the `thresher mixture` CLI."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from curate import mixture
from pipelines.cli import main as cli_main

DOMAINS = ["a", "b", "c", "d"]


def test_propose_designs_are_on_the_simplex_and_seeded():
    W = mixture.propose(DOMAINS, 20, strategy="mixed", seed=3)
    assert W.columns == DOMAINS and W.height == 20
    M = W.to_numpy()
    assert np.allclose(M.sum(axis=1), 1) and (M >= 0).all()
    # uniform, then each domain alone, then leave-one-out come first
    assert np.allclose(M[0], 0.25) and np.allclose(M[1:5], np.eye(4))
    assert np.allclose(M[5:9], (1 - np.eye(4)) / 3)
    assert W.equals(mixture.propose(DOMAINS, 20, strategy="mixed", seed=3))
    assert not W.equals(mixture.propose(DOMAINS, 20, strategy="mixed", seed=4))
    D = mixture.propose(DOMAINS, 400, strategy="dirichlet", prior={"a": 0.7, "b": 0.1,
                        "c": 0.1, "d": 0.1}, concentration=50, seed=0).to_numpy()
    assert abs(D[:, 0].mean() - 0.7) < 0.02


def test_quadratic_fit_recovers_known_scheffe_coefficients():
    rng = np.random.default_rng(0)
    W = rng.dirichlet(np.ones(4), size=60)
    b = np.array([1.0, -2.0, 0.5, 3.0])
    iu, ju = np.triu_indices(4, k=1)
    bij = np.array([4.0, -1.0, 0.0, 2.5, -3.0, 1.5])
    y = W @ b + (W[:, iu] * W[:, ju]) @ bij
    f = mixture.fit(pl.DataFrame(W, schema=DOMAINS), y, models=("quadratic", "linear"))
    assert f.kind == "quadratic"
    coef = f.models["quadratic"].coefficients
    assert np.allclose([coef[d] for d in DOMAINS], b, atol=1e-3)
    assert np.allclose([coef[f"{DOMAINS[i]}*{DOMAINS[j]}"] for i, j in zip(iu, ju, strict=True)], bij,
                       atol=1e-2)
    assert f.report["quadratic"]["spearman"] > 0.999
    assert f.report["quadratic"]["rmse"] < 1e-3 < f.report["linear"]["rmse"]


def test_exp_law_and_report_for_every_model():
    rng = np.random.default_rng(1)
    W = rng.dirichlet(np.ones(3), size=40)
    y = 2.0 + 0.5 * np.exp(W @ np.array([-1.0, 0.5, 1.5]))
    f = mixture.fit(W, y, models=("linear", "exp", "kernel", "gbm"),
                     domains=["x", "y", "z"])
    assert set(f.report) == {"linear", "exp", "kernel", "gbm"}
    assert f.report["exp"]["rmse"] < 1e-4
    assert f.kind == "exp"
    assert np.allclose(f.predict({"x": 0.2, "y": 0.3, "z": 0.5}),
                       2 + 0.5 * np.exp(-0.2 + 0.15 + 0.75), atol=1e-4)


def test_optimize_respects_bounds_simplex_and_kl():
    rng = np.random.default_rng(2)
    W = rng.dirichlet(np.ones(4), size=40)
    y = W @ np.array([1.0, 2.0, 3.0, 4.0])  # best to maximize: all on d
    f = mixture.fit(pl.DataFrame(W, schema=DOMAINS), y, models=("linear",))
    free = mixture.optimize(f, maximize=True)
    assert free.weights["d"] > 0.999
    bounds = {"d": (0.0, 0.4), "c": (0.0, 0.3), "a": (0.1, 1.0)}
    best = mixture.optimize(f, maximize=True, bounds=bounds, n_starts=8)
    w = best.weights
    assert abs(sum(w.values()) - 1) < 1e-9 and min(w.values()) >= 0
    assert w["d"] <= 0.4 + 1e-9 and w["c"] <= 0.3 + 1e-9 and w["a"] >= 0.1 - 1e-9
    assert np.allclose([w["a"], w["b"], w["c"], w["d"]], [0.1, 0.2, 0.3, 0.4], atol=1e-4)
    low = mixture.optimize(f, maximize=False)
    assert low.weights["a"] > 0.999 and low.predicted < free.predicted
    # a strong KL pull to uniform keeps the mixture near uniform
    kl = mixture.optimize(f, maximize=True, prior=[0.25] * 4, kl_weight=100.0)
    assert max(abs(v - 0.25) for v in kl.weights.values()) < 0.05
    with pytest.raises(mixture.MixtureInputError, match="infeasible"):
        mixture.optimize(f, bounds={"a": (0.6, 1), "b": (0.6, 1)})


def test_gain_interval_brackets_the_point_estimate():
    rng = np.random.default_rng(3)
    W = rng.dirichlet(np.ones(3), size=30)
    y = W @ np.array([0.0, 1.0, 2.0]) + rng.normal(0, 0.01, 30)
    f = mixture.fit(W, y, models=("linear",), domains=["x", "y", "z"])
    g = mixture.gain_interval(f, [0, 0, 1], n_boot=50)
    assert g["low"] <= g["gain"] <= g["high"] and 0.9 < g["gain"] < 1.1


def test_bad_input_errors_name_source_row_and_column():
    df = pl.DataFrame({"a": [0.5, 0.5], "b": [0.5, 0.2]})
    with pytest.raises(mixture.MixtureInputError, match=r"mix.csv: row 1.*sum to 0.7"):
        mixture.validate_mixtures(df, ["a", "b"], "mix.csv")
    with pytest.raises(mixture.MixtureInputError, match=r"mix.csv.*\['c'\] missing"):
        mixture.validate_mixtures(df, ["a", "b", "c"], "mix.csv")
    nan = pl.DataFrame({"a": [0.5, float("nan")], "b": [0.5, 0.5]})
    with pytest.raises(mixture.MixtureInputError, match=r"row 1, column 'a'"):
        mixture.validate_mixtures(nan, ["a", "b"], "mix.csv")
    with pytest.raises(mixture.MixtureInputError, match=r"row 1: score is nan"):
        mixture.fit(np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]]), [1.0, float("nan"), 2.0])


def test_cli_propose_fit_optimize_round_trip(tmp_path, capsys):
    pilots = tmp_path / "pilots.csv"
    assert cli_main(["mixture", "propose", "--domains", "a,b,c", "-n", "24", "--seed", "1",
                     "-o", str(pilots)]) == 0
    W = pl.read_csv(pilots)
    assert W.columns == ["a", "b", "c"] and W.height == 24
    scores = W.with_columns(score=pl.col("a") + 2 * pl.col("b") - pl.col("a") * pl.col("b"))
    results = tmp_path / "results.parquet"
    scores.write_parquet(results)
    model = tmp_path / "fit.json"
    assert cli_main(["mixture", "fit", str(results), "--score", "score", "--models",
                     "linear,quadratic", "-o", str(model)]) == 0
    out = tmp_path / "best.csv"
    assert cli_main(["mixture", "optimize", str(results), "--score", "score", "--maximize",
                     "--models", "quadratic", "--bound", "b=0:0.5", "--n-boot", "20",
                     "-o", str(out)]) == 0
    best = pl.read_csv(out)
    assert best["b"][0] <= 0.5 + 1e-9 and abs(best.select(["a", "b", "c"]).sum_horizontal()[0]
                                               - 1) < 1e-6
    printed = capsys.readouterr().out
    assert "gain over uniform" in printed
    # a results file lacking a domain column the pilots had is a user error naming it
    scores.drop("c").write_csv(tmp_path / "bad.csv")
    assert cli_main(["mixture", "fit", str(tmp_path / "bad.csv"), "--score", "score",
                     "--domains", "a,b,c"]) == 2
    assert "bad.csv" in capsys.readouterr().err


def test_search_loop_is_resumable_and_confirms(tmp_path):
    from pipelines.mixture_search import run_search

    calls: list[tuple[float, int]] = []

    def fake_pilot(weights, seed, run_dir):
        calls.append((weights["a"], seed))
        # "a" helps every domain, "c" hurts: best mixture is all-a
        s = 0.5 + 0.4 * weights["a"] - 0.3 * weights["c"]
        return {"a": s, "b": s - 0.1, "c": s + 0.05}

    kw = dict(n_pilots=10, confirm_seeds=2, models=("linear",), log=lambda m: None)
    summary = run_search(["a", "b", "c"], fake_pilot, tmp_path, **kw)
    assert len(calls) == 10 + 2 * 2
    assert len(list((tmp_path / "pilots").glob("pilot-*/result.json"))) == 10
    assert summary["best_mixture"]["a"] > 0.99
    assert summary["observed_gain"] > 0.1 and summary["chosen_model"] == "linear"
    assert pl.read_csv(tmp_path / "results.csv").height == 10
    # interrupted search: two pilot results and one confirmation lost -> only they rerun
    for p in ("pilots/pilot-0003", "pilots/pilot-0007", "confirm/uniform-seed2"):
        (tmp_path / p / "result.json").unlink()
    calls.clear()
    again = run_search(["a", "b", "c"], fake_pilot, tmp_path, **kw)
    assert len(calls) == 3
    assert again["best_mixture"] == summary["best_mixture"]


def test_search_cli_rejects_unknown_pilot(tmp_path, capsys):
    spec = tmp_path / "s.toml"
    spec.write_text('[search]\ndomains = ["a", "b"]\npilot = "nope"\n')
    assert cli_main(["mixture", "search", str(spec), "--out", str(tmp_path / "o")]) == 2
    assert "s.toml" in capsys.readouterr().err


def test_target_score_and_seed_comparison():
    from pipelines.mixture_search import compare_over_seeds, target_score, transfer_table

    s = {"a": 0.2, "b": 0.4, "c": 0.9}
    assert target_score(s, "mean") == pytest.approx(0.5)
    assert target_score(s, "c") == 0.9
    assert target_score(s, ["a", "b"]) == pytest.approx(0.3)
    clear = compare_over_seeds([0.60, 0.62, 0.61], [0.50, 0.51, 0.49])
    assert clear["beats_uniform_beyond_noise"] and clear["observed_gain"] == pytest.approx(0.11)
    assert clear["welch_p"] < 0.01 and clear["paired"]["diffs"] == pytest.approx([0.1, 0.11, 0.12])
    assert clear["best"]["std"] == pytest.approx(0.01)
    noisy = compare_over_seeds([0.60, 0.40, 0.55], [0.50, 0.45, 0.52])
    assert not noisy["beats_uniform_beyond_noise"]
    # a loss: lower is better
    assert compare_over_seeds([1.0, 1.1, 1.05], [2.0, 2.1, 2.05], maximize=False)[
        "beats_uniform_beyond_noise"]
    runs = [{"weights": {"a": 1.0, "b": 0.0}, "scores": {"a": 0.5, "b": 0.1}},
            {"weights": {"a": 0.5, "b": 0.5}, "scores": {"a": 0.4, "b": 0.4}},
            {"weights": {"a": 0.0, "b": 1.0}, "scores": {"a": 0.1, "b": 0.6}}]
    t = transfer_table(runs, ["a", "b"], {"a": 0.2, "b": 0.2})
    assert t == {"a": pytest.approx({"a": 0.3, "b": -0.1}), "b": pytest.approx({"a": -0.1, "b": 0.4})}


def test_search_cli_simulated_pilot(tmp_path, capsys):
    """`pilot = "simulated"`: the analytic stand-in, for demos; "c" hurts every domain."""
    import json

    spec = tmp_path / "sim.toml"
    spec.write_text('[search]\ndomains = ["a", "b", "c"]\npilot = "simulated"\n'
                    'interactions = [[1.0, 0.3, -0.5], [0.3, 1.0, -0.5], [0.0, 0.0, 0.2]]\n'
                    'target = ["a", "b"]\nn_pilots = 10\nnoise = 0.005\n')
    assert cli_main(["mixture", "search", str(spec), "--out", str(tmp_path / "o")]) == 0
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["pilot"] == "simulated" and summary["best_mixture"]["c"] < 0.05
    assert summary["beats_uniform_beyond_noise"]
    assert "beats uniform beyond the noise" in capsys.readouterr().out


def test_search_spec_errors_name_the_key(tmp_path, capsys):
    spec = tmp_path / "s.toml"
    spec.write_text('[search]\ndomains = ["add", "mul"]\npilot = "grpo"\n'
                    '[pilot.grpo]\nstep = 3\n')
    assert cli_main(["mixture", "search", str(spec), "--out", str(tmp_path / "o")]) == 2
    assert "pilot.grpo.step: unknown key" in capsys.readouterr().err
    spec.write_text('[search]\ndomains = ["add", "nope"]\npilot = "grpo"\n')
    assert cli_main(["mixture", "search", str(spec), "--out", str(tmp_path / "o")]) == 2
    assert "unknown synthetic domain(s) ['nope']" in capsys.readouterr().err
    # [pilot] keys override the pilot-sized defaults one by one
    from pipelines.mixture_search import PILOT_DEFAULTS, GRPOPilotSpec

    p = GRPOPilotSpec.model_validate({"grpo": {"steps": 7}})
    assert p.grpo.steps == 7 and p.grpo.sampler == PILOT_DEFAULTS["grpo"]["sampler"] == "uniform"


TINY_GRPO = """
[search]
domains = ["add", "cmp", "radd"]
pilot = "grpo"
target = ["add", "cmp"]
n_pilots = 4
confirm_seeds = 2
models = ["linear"]
[pilot]
max_level = 1
n_sft = 60
n_eval = 12
eval_k = 2
[pilot.model]
hidden_size = 16
num_layers = 1
num_heads = 2
intermediate_size = 32
[pilot.sft]
max_steps = 3
batch_size = 8
[pilot.grpo]
steps = 2
prompts_per_step = 4
group_size = 4
max_new_tokens = 6
"""


def test_grpo_pilot_trains_for_real_end_to_end(tmp_path, capsys):
    """The real pilot on a tiny budget: cold start once, GRPO per mixture, per-domain scores."""
    import json

    import pyarrow.parquet as pq

    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY_GRPO)
    out = tmp_path / "search"
    assert cli_main(["mixture", "search", str(spec), "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["pilot"] == "grpo" and summary["target"] == ["add", "cmp"]
    assert set(summary["best_mixture"]) == {"add", "cmp", "radd"}
    assert len(summary["confirm"]["best"]) == len(summary["confirm"]["uniform"]) == 2
    cmp = summary["comparison"]
    assert {"best", "uniform", "gain_stderr", "welch_p", "paired"} <= set(cmp)
    assert set(summary["reference_scores"]) == {"add", "cmp", "radd"}
    assert set(summary["transfer"]) == {"add", "cmp", "radd"}  # the three domain-alone pilots
    for run in [*sorted((out / "pilots").iterdir()), *sorted((out / "confirm").iterdir())]:
        res = json.loads((run / "result.json").read_text())
        assert set(res["scores"]) == {"add", "cmp", "radd"}
        assert all(0.0 <= v <= 1.0 for v in res["scores"].values())
        info = json.loads((run / "pilot.json").read_text())
        assert info["grpo_steps"] == 2
        # the RL pool follows the mixture: a zero-weight domain has no rows
        assert all((info["rl_rows"][d] == 0) == (res["weights"][d] == 0) for d in res["weights"])
        assert pq.read_table(run / "eval.parquet").num_rows == 12 * 2  # k=2 samples per problem
        assert list((run / "rollouts").glob("*.parquet"))
        assert not (run / "checkpoints").exists()
    # one shared cold start: the held-out set is disjoint from every RL pool by construction
    assert (out / "cold_start" / "sft" / "final" / "config.json").exists()
    held = set(pq.read_table(out / "cold_start" / "held_out.parquet").column("id").to_pylist())
    seen = set()
    for part in out.glob("*/*/rollouts/*.parquet"):
        seen |= set(pq.read_table(part).column("sample_id").to_pylist())
    assert seen and held.isdisjoint(seen)
    # resumable: a second invocation re-runs nothing (and does not retrain the cold start)
    stamp = (out / "cold_start" / "sft" / "final" / "config.json").stat().st_mtime_ns
    capsys.readouterr()
    assert cli_main(["mixture", "search", str(spec), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert " ran" not in printed and "cached" in printed
    assert (out / "cold_start" / "sft" / "final" / "config.json").stat().st_mtime_ns == stamp
    # other pilot settings in the same OUT would silently mix results: refused
    spec.write_text(TINY_GRPO.replace("steps = 2", "steps = 3"))
    assert cli_main(["mixture", "search", str(spec), "--out", str(out)]) == 2
    assert "other [pilot] settings" in capsys.readouterr().err
