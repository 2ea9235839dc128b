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
