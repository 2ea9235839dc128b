"""RegMix benchmark for curate.mixture predictors.

Data: ../shared/data/regmix (sail-sg/regmix @ b004d3a, MIT): 512 training mixtures
of 17 Pile domains with validation losses of 1M-parameter models; 256 held-out
mixtures trained at 1M and 60M, 64 at 1B.
Target: the Pile-CC validation loss (``metric/the_pile_pile_cc_val_loss``), the
target RegMix itself regresses and optimizes.

For each predictor and each training size (16, 32, 64, 512 rows, the first n rows
of the training file, as RegMix subsamples), report Spearman of predictions vs the
held-out 1M losses and the ranking transfer to 60M and 1B losses. Baseline: the
linear model measured in the same run (ratios printed against it).

    .venv/bin/python bench/mixture_regmix.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from curate import mixture  # noqa: E402
from curate.io import write_json_atomic  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "regmix"
TARGET = "metric/the_pile_pile_cc_val_loss"
SIZES = (16, 32, 64, 512)
MODELS = ("linear", "quadratic", "exp", "kernel", "gbm")


def load(mix: str, loss: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    m = pl.read_csv(DATA / f"{mix}.csv")
    y = pl.read_csv(DATA / f"{loss}.csv")
    joined = m.join(y.select("index", TARGET), on="index", how="inner")
    domains = [c for c in m.columns if c != "index"]
    return mixture.validate_mixtures(joined, domains, mix), joined[TARGET].to_numpy(), domains


def main() -> int:
    if not DATA.exists():
        print(f"skip: {DATA} absent")
        return 0
    Wtr, ytr, domains = load("train_mixture_1m", "train_pile_loss_1m")
    tests = {s: load(f"test_mixture_{s}", f"test_pile_loss_{s}")[:2] for s in ("1m", "60m", "1B")}
    results: dict = {"target": TARGET, "sizes": list(SIZES), "models": {}}
    t0 = time.time()
    for name in MODELS:
        results["models"][name] = {}
        for n in SIZES:
            t = time.time()
            f = mixture.fit(Wtr[:n], ytr[:n], models=(name,), domains=domains)
            row = {s: float(stats.spearmanr(f.predict(W), y).statistic)
                   for s, (W, y) in tests.items()}
            row["cv_spearman"] = f.report[name]["spearman"]
            row["fit_s"] = round(time.time() - t, 2)
            results["models"][name][str(n)] = row
            print(f"{name:9s} n={n:3d}  1M {row['1m']:.3f}  60M {row['60m']:.3f}  "
                  f"1B {row['1B']:.3f}  (cv {row['cv_spearman']:.3f}, {row['fit_s']}s)", flush=True)
    # the automatic choice (fit() picks by CV Spearman) at each size
    for n in SIZES:
        f = mixture.fit(Wtr[:n], ytr[:n], models=MODELS, domains=domains)
        results.setdefault("auto", {})[str(n)] = {
            "chosen": f.kind,
            **{s: float(stats.spearmanr(f.predict(W), y).statistic) for s, (W, y) in tests.items()},
        }
    base = results["models"]["linear"]
    print("\nratio of held-out 1M Spearman vs linear baseline:")
    for name in MODELS:
        r = [results["models"][name][str(n)]["1m"] / base[str(n)]["1m"] for n in SIZES]
        print(f"  {name:9s} " + "  ".join(f"n={n}: {x:.2f}x" for n, x in zip(SIZES, r, strict=True)))
    print("auto choice:", {n: (v["chosen"], round(v["1m"], 3)) for n, v in results["auto"].items()})
    results["total_s"] = round(time.time() - t0, 1)
    out = ROOT / "bench" / "results" / "mixture_regmix.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(results, out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
