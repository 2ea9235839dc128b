"""`thresher mixture propose|fit|optimize|search`: data-mixture optimization.

    thresher mixture propose --domains math,code,chat -n 16 -o pilots.csv
    thresher mixture fit results.csv --score reward -o fit.json
    thresher mixture optimize results.csv --score reward --maximize --bound code=0:0.5
    thresher mixture search examples/mixture_search.toml
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import polars as pl

from curate import mixture
from curate.io import read_table, write_json_atomic, write_parquet_atomic, write_text_atomic
from pipelines.cli import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = sub.add_parser("propose", help="pilot mixtures to try")
    p.add_argument("--domains", help="comma-separated domain names")
    p.add_argument("--from", dest="from_file", help="take the domain names from this table")
    p.add_argument("-n", type=int, default=16, help="number of mixtures (default 16)")
    p.add_argument("--strategy", default="mixed",
                   help="mixed|vertices|leave_one_out|uniform|dirichlet|space_filling")
    p.add_argument("--prior", help="domain=weight,... (Dirichlet centre)")
    p.add_argument("--concentration", type=float, default=10.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--output", help="CSV or Parquet (by suffix); stdout if absent")
    for name, text in (("fit", "fit predictors, report CV Spearman/RMSE, pick one"),
                       ("optimize", "fit, then find the best mixture within bounds")):
        q = sub.add_parser(name, help=text)
        q.add_argument("results", help="CSV/Parquet: one row per run, domain weights + score")
        q.add_argument("--score", required=True, help="score column (a loss or a reward)")
        q.add_argument("--domains", help="comma-separated weight columns (default: all other "
                       "numeric columns)")
        q.add_argument("--models", default="linear,quadratic,exp,kernel,gbm")
        q.add_argument("--select", choices=("spearman", "rmse"), default="spearman")
        q.add_argument("--seed", type=int, default=0)
        q.add_argument("-o", "--output", help="fit: JSON report; optimize: CSV/Parquet mixture")
    q.add_argument("--maximize", action="store_true", help="higher score is better (rewards)")
    q.add_argument("--bound", action="append", default=[], metavar="DOMAIN=LO:HI")
    q.add_argument("--prior", help="domain=weight,... for the KL penalty")
    q.add_argument("--kl-weight", type=float, default=0.0)
    q.add_argument("--n-starts", type=int, default=32)
    q.add_argument("--n-boot", type=int, default=200, help="bootstrap refits for the interval")
    s = sub.add_parser("search", help="propose, train pilots, fit, optimize, confirm")
    s.add_argument("spec", help="TOML search spec (see examples/mixture_search.toml)")
    s.add_argument("--out", help="override the spec's output directory")


def _frame(path: str) -> pl.DataFrame:
    return pl.from_arrow(read_table(path))  # curate.io.read_table: the one table reader


def _write_table(df: pl.DataFrame, path: str | None) -> None:
    if path is None:
        print(df.write_csv(), end="")
    elif Path(path).suffix in (".parquet", ".pq"):
        write_parquet_atomic(df.to_arrow(), path)
    else:
        write_text_atomic(df.write_csv(), path)


def _pairs(text: str | None, what: str) -> dict[str, float] | None:
    if not text:
        return None
    out = {}
    for item in text.split(","):
        k, sep, v = item.partition("=")
        try:
            out[k.strip()] = float(v)
        except ValueError:
            raise UserError(f"{what}: expected domain=number, got {item!r}") from None
        if not sep:
            raise UserError(f"{what}: expected domain=number, got {item!r}")
    return out


def _load_results(args: argparse.Namespace) -> tuple[pl.DataFrame, list[str]]:
    df = _frame(args.results)
    if args.score not in df.columns:
        raise UserError(f"{args.results}: score column {args.score!r} missing; columns are "
                        f"{df.columns}")
    if args.domains:
        domains = [d.strip() for d in args.domains.split(",")]
    else:
        domains = [c for c, t in df.schema.items()
                   if t.is_numeric() and c not in (args.score, "index", "seed", "run")]
    return df, domains


def _fit(args: argparse.Namespace) -> tuple[mixture.MixtureFit, pl.DataFrame]:
    df, domains = _load_results(args)
    try:
        mixture.validate_mixtures(df, domains, args.results)
        y = df[args.score].cast(pl.Float64, strict=False)
        bad = y.is_null() | y.is_nan()
        if bad.any():
            row = int(bad.arg_true()[0])
            raise UserError(f"{args.results}: row {row}, column {args.score!r}: score "
                            f"{df[args.score][row]!r} is not a finite number")
        models = [m.strip() for m in args.models.split(",")]
        return mixture.fit(df.select(domains), y.to_numpy(), models=models, domains=domains,
                           select=args.select, seed=args.seed), df
    except mixture.MixtureInputError as exc:
        raise UserError(str(exc)) from exc


def _print_report(f: mixture.MixtureFit) -> None:
    print(f"{'model':10s} {'cv_spearman':>11s} {'cv_rmse':>10s}")
    for name, r in f.report.items():
        mark = "  <- chosen" if name == f.kind else ""
        print(f"{name:10s} {r['spearman']:11.4f} {r['rmse']:10.4g}{mark}")


def _bounds(items: list[str]) -> dict[str, tuple[float, float]]:
    out = {}
    for item in items:
        dom, _, rng = item.partition("=")
        lo, _, hi = rng.partition(":")
        try:
            out[dom.strip()] = (float(lo or 0.0), float(hi or 1.0))
        except ValueError:
            raise UserError(f"--bound: expected DOMAIN=LO:HI, got {item!r}") from None
    return out


def run(args: argparse.Namespace) -> int:
    if args.action == "propose":
        return _propose(args)
    if args.action == "search":
        from pipelines.mixture_search import run_search_cli

        return run_search_cli(args.spec, args.out)
    f, _ = _fit(args)
    _print_report(f)
    if args.action == "fit":
        if args.output:
            write_json_atomic({"chosen": f.kind, "domains": f.domains, "report": f.report,
                               "coefficients": f.coefficients}, args.output)
        return 0
    try:
        best = mixture.optimize(f, bounds=_bounds(args.bound) or None, maximize=args.maximize,
                                prior=_pairs(args.prior, "--prior"), kl_weight=args.kl_weight,
                                n_starts=args.n_starts, seed=args.seed)
        gain = mixture.gain_interval(f, best.weights, n_boot=args.n_boot, seed=args.seed)
    except mixture.MixtureInputError as exc:
        raise UserError(str(exc)) from exc
    _print_mixture(best, gain, args.maximize)
    row: dict[str, Any] = {**best.weights, "predicted": best.predicted, "gain": gain["gain"],
                           "gain_low": gain["low"], "gain_high": gain["high"]}
    if args.output:
        _write_table(pl.DataFrame([row]), args.output)
    return 0


def _print_mixture(best: mixture.OptimizedMixture, gain: dict, maximize: bool) -> None:
    print("best mixture:")
    for d, w in sorted(best.weights.items(), key=lambda kv: -kv[1]):
        print(f"  {d:24s} {w:.4f}")
    sense = "higher is better" if maximize else "lower is better: negative gain = better"
    print(f"predicted score {best.predicted:.5g} ({sense}); gain over uniform "
          f"{gain['gain']:+.4g} [{gain['level']:.0%} bootstrap interval {gain['low']:+.4g}, "
          f"{gain['high']:+.4g}]")


def _propose(args: argparse.Namespace) -> int:
    if args.domains:
        domains = [d.strip() for d in args.domains.split(",") if d.strip()]
    elif args.from_file:
        domains = [c for c in _frame(args.from_file).columns if c != "index"]
    else:
        raise UserError("propose: give --domains a,b,c or --from TABLE")
    try:
        W = mixture.propose(domains, args.n, strategy=args.strategy,
                            prior=_pairs(args.prior, "--prior"),
                            concentration=args.concentration, seed=args.seed)
    except mixture.MixtureInputError as exc:
        raise UserError(str(exc)) from exc
    _write_table(W, args.output)
    return 0


__all__ = ["add_arguments", "run"]
