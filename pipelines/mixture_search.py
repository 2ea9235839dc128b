"""`thresher mixture search SPEC`: propose pilots, run each, fit, optimize, confirm.

The loop is independent of what a pilot is: a *pilot function*
``pilot(weights: dict[str, float], seed: int, run_dir: Path) -> dict[str, float]``
trains with the given domain mixture and returns a held-out score per domain
(e.g. accuracy). The search score of a run is the mean over domains, one
domain's score (``target = "<domain>"``) or the mean over a list of domains
(``target = ["add", "mul"]``). Every run lives in its own subdirectory with a
``result.json`` written atomically when it finishes, so an interrupted search
resumes without redoing finished runs.

Layout of OUT::

    OUT/pilots.csv                     proposed pilot mixtures
    OUT/cold_start/                    grpo pilot: the shared SFT checkpoint + its eval
    OUT/pilots/pilot-0003/result.json  {"weights", "seed", "scores"}
    OUT/results.csv                    one row per finished pilot (weights + scores)
    OUT/confirm/best-seed1/result.json and OUT/confirm/uniform-seed1/result.json
    OUT/summary.json                   fit report, chosen mixture, confirmation over seeds

Pilot kinds shipped:

* ``grpo`` (:class:`GRPOPilot`): real training on the synthetic suite
  (``curate.synthetic``). One cold-start SFT checkpoint is trained per search
  (on every domain, equal shares) and cached in ``OUT/cold_start``; each pilot
  copies it, runs a short GRPO (the embedded trainer, ``trainer.grpo``) on an
  RL pool drawn with the pilot's mixture (``make_splits(weights=...)``, uniform
  sampler, so a step's prompts follow the mixture), and scores greedy accuracy
  per domain on one fixed held-out set (``trainer.evaluation.evaluate``).
* ``simulated`` (:func:`simulated_pilot`): a seeded analytic stand-in with
  domains that help and hurt each other, for demos and fast tests; it trains
  nothing.
"""

from __future__ import annotations

import copy
import json
import math
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
from pydantic import Field, model_validator

from curate import mixture
from curate.config import Config, read_toml
from curate.errors import ConfigError, DataError
from curate.io import write_json_atomic, write_parquet_atomic, write_text_atomic
from pipelines.job import ModelSection, build_model, reject_job_wide
from trainer.config import GRPOConfig, SFTConfig

PilotFn = Callable[[dict[str, float], int, Path], dict[str, float]]
Target = str | list[str]


# --------------------------------------------------------------------- the loop
def _run_once(pilot: PilotFn, weights: dict[str, float], seed: int, run_dir: Path) -> dict:
    """Run one pilot unless its result.json exists (resumability)."""
    done = run_dir / "result.json"
    if done.exists():
        return json.loads(done.read_text())
    run_dir.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    scores = {k: float(v) for k, v in pilot(weights, seed, run_dir).items()}
    result = {"weights": weights, "seed": seed, "scores": scores,
              "seconds": time.perf_counter() - t}
    write_json_atomic(result, done)
    return result


def target_score(scores: dict[str, float], target: Target) -> float:
    """The search score of one run: mean over all domains, one domain, or a list's mean."""
    return float(np.mean([scores[d] for d in _target_domains(target) or scores]))


def _target_domains(target: Target) -> list[str]:
    """The domains a target names ("mean" names none: it averages whatever is scored)."""
    if target == "mean":
        return []
    return [target] if isinstance(target, str) else list(target)


def _stats(values: Sequence[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=float)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else float("nan"),
            "n": len(a)}


def compare_over_seeds(best: Sequence[float], uniform: Sequence[float], maximize: bool = True
                       ) -> dict[str, Any]:
    """Gain of the found mixture over uniform against the seed-to-seed noise.

    ``gain_stderr`` is the standard error of the difference of the two means
    (Welch); the verdict ``beats_uniform_beyond_noise`` asks for a gain above twice
    that and a one-sided Welch t-test p < 0.05. ``paired`` uses the seed pairing
    (same seed, so the same GRPO sampling stream) as a second view.
    """
    from scipy import stats

    b, u = np.asarray(best, dtype=float), np.asarray(uniform, dtype=float)
    sign = 1.0 if maximize else -1.0
    diff = sign * (b.mean() - u.mean())
    out: dict[str, Any] = {"best": _stats(b), "uniform": _stats(u), "observed_gain": float(diff)}
    if len(b) < 2 or len(u) < 2:
        out.update(gain_stderr=float("nan"), welch_p=float("nan"),
                   beats_uniform_beyond_noise=False)
        return out
    se = float(math.sqrt(b.var(ddof=1) / len(b) + u.var(ddof=1) / len(u)))
    if se > 0:
        t = stats.ttest_ind(sign * b, sign * u, equal_var=False, alternative="greater")
        p = float(t.pvalue)
    else:
        p = 0.0 if diff > 0 else 1.0
    out.update(gain_stderr=se, welch_p=p, beats_uniform_beyond_noise=bool(diff > 2 * se and p < 0.05))
    if len(b) == len(u):
        d = sign * (b - u)
        out["paired"] = {"diffs": d.tolist(), "mean": float(d.mean()), "std": float(d.std(ddof=1)),
                         "stderr": float(d.std(ddof=1) / math.sqrt(len(d)))}
    return out


def transfer_table(results: Sequence[dict], domains: Sequence[str],
                   reference: dict[str, float] | None) -> dict[str, dict[str, float]]:
    """Per-domain held-out scores after training on one domain alone (the vertex pilots).

    With ``reference`` (the scores before any pilot training, e.g. the cold start)
    each entry is the change: ``table[trained][evaluated] = score - reference``;
    a negative off-diagonal entry is a domain that hurts another.
    """
    table: dict[str, dict[str, float]] = {}
    for res in results:
        w = res["weights"]
        alone = [d for d in domains if w.get(d, 0.0) > 0.999]
        if len(alone) != 1 or alone[0] in table:
            continue
        ref = reference or {}
        table[alone[0]] = {k: float(v - ref.get(k, 0.0)) for k, v in res["scores"].items()}
    return table


def run_search(
    domains: list[str],
    pilot: PilotFn,
    out_dir: str | Path,
    n_pilots: int = 12,
    strategy: str = "mixed",
    seed: int = 0,
    confirm_seeds: int = 3,
    maximize: bool = True,
    target: Target = "mean",
    models: Sequence[str] = ("linear", "quadratic", "exp", "kernel"),
    bounds: dict[str, tuple[float, float]] | None = None,
    log: Callable[[str], None] = print,
    reference: Callable[[], dict[str, float]] | None = None,
) -> dict[str, Any]:
    """The whole loop; returns (and writes to OUT/summary.json) the summary.

    ``reference`` (optional) gives the held-out scores before any pilot training
    (the grpo pilot's cold start); the summary then reports each domain-alone
    pilot as a change from it (``transfer``).
    """
    t_start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    design = mixture.propose(domains, n_pilots, strategy=strategy, seed=seed)
    write_text_atomic(design.write_csv(), out / "pilots.csv")
    rows, pilot_results = [], []
    for i, w in enumerate(design.iter_rows(named=True)):
        run_dir = out / "pilots" / f"pilot-{i:04d}"
        fresh = not (run_dir / "result.json").exists()
        res = _run_once(pilot, w, seed, run_dir)
        pilot_results.append(res)
        rows.append({**res["weights"], **{f"score_{k}": v for k, v in res["scores"].items()},
                     "score": target_score(res["scores"], target)})
        took = f" in {res['seconds']:.0f}s" if fresh and "seconds" in res else ""
        log(f"pilot {i + 1}/{n_pilots} {'ran' if fresh else 'cached'}{took}: "
            + " ".join(f"{d}={w[d]:.2f}" for d in domains) + f" -> score {rows[-1]['score']:.4f}")
    t_pilots = time.perf_counter() - t_start
    results = pl.DataFrame(rows)
    write_text_atomic(results.write_csv(), out / "results.csv")
    fitted = mixture.fit(results.select(domains), results["score"].to_numpy(), models=list(models),
                         domains=domains, seed=seed)
    best = mixture.optimize(fitted, bounds=bounds, maximize=maximize, seed=seed)
    gain = mixture.gain_interval(fitted, best.weights, n_boot=100, seed=seed)
    log(f"fit: chose {fitted.kind} (CV spearman {fitted.report[fitted.kind]['spearman']:.3f}); "
        "best mixture " + ", ".join(f"{d}={w:.3f}" for d, w in best.weights.items())
        + f"; predicted gain over uniform {gain['gain']:+.4f} [{gain['low']:+.4f}, {gain['high']:+.4f}]")
    uniform = {d: 1.0 / len(domains) for d in domains}
    confirm: dict[str, list[float]] = {"best": [], "uniform": []}
    confirm_scores: dict[str, list[dict[str, float]]] = {"best": [], "uniform": []}
    for s in range(1, confirm_seeds + 1):  # interleaved, so a partial run has both arms
        for name, w in (("best", best.weights), ("uniform", uniform)):
            res = _run_once(pilot, w, seed + s, out / "confirm" / f"{name}-seed{s}")
            confirm[name].append(target_score(res["scores"], target))
            confirm_scores[name].append(res["scores"])
            log(f"confirm {name} seed {seed + s}: score {confirm[name][-1]:.4f}")
    cmp = compare_over_seeds(confirm["best"], confirm["uniform"], maximize)
    ref = reference() if reference is not None else None
    summary = {
        "domains": domains, "target": target, "n_pilots": n_pilots, "seed": seed,
        "chosen_model": fitted.kind, "fit_report": fitted.report, "best_mixture": best.weights,
        "predicted": best.predicted, "predicted_gain": gain,
        "confirm_seeds": [seed + s for s in range(1, confirm_seeds + 1)],
        "confirm": confirm, "confirm_scores": confirm_scores, "comparison": cmp,
        "observed_gain": cmp["observed_gain"], "gain_stderr": cmp["gain_stderr"],
        "beats_uniform_beyond_noise": cmp["beats_uniform_beyond_noise"],
        "reference_scores": ref, "transfer": transfer_table(pilot_results, domains, ref),
        "seconds": {"pilots": t_pilots, "total": time.perf_counter() - t_start},
    }
    write_json_atomic(summary, out / "summary.json")
    b, u = cmp["best"], cmp["uniform"]
    log(f"confirm: best {b['mean']:.4f} ± {b['std']:.4f} vs uniform {u['mean']:.4f} ± "
        f"{u['std']:.4f} over {b['n']} seeds; gain {cmp['observed_gain']:+.4f} "
        f"(stderr {cmp['gain_stderr']:.4f}, Welch p {cmp['welch_p']:.3g}) -> "
        + ("beats uniform beyond the noise" if cmp["beats_uniform_beyond_noise"]
           else "NOT beyond the noise"))
    return summary


# ------------------------------------------------------------ simulated pilot
def simulated_pilot(interactions: np.ndarray, noise: float = 0.01) -> PilotFn:
    """A seeded analytic stand-in for training: score_j = base + sum_i A_ji w_i - penalty.

    ``interactions[j, i]`` is how much training on domain i helps held-out domain j
    (negative: hurts). Trains nothing; for demos and orchestration tests.
    """
    A = np.asarray(interactions, dtype=float)

    def pilot(weights: dict[str, float], seed: int, run_dir: Path) -> dict[str, float]:
        names = list(weights)
        w = np.array([weights[d] for d in names])
        rng = np.random.default_rng([seed, int(1e6 * w[0])])
        acc = 0.3 + A @ np.sqrt(w) * 0.3 + rng.normal(0, noise, len(names))
        return dict(zip(names, np.clip(acc, 0, 1).tolist(), strict=True))

    return pilot


# ----------------------------------------------------------------- grpo pilot
# Pilot-sized defaults (a ~0.2M-parameter char-level Qwen2, a few hundred SFT steps,
# tens of GRPO steps): a [pilot.model] / [pilot.sft] / [pilot.grpo] table in the spec
# overrides keys one by one; the rest keep these values, not the trainer's defaults.
PILOT_DEFAULTS: dict[str, dict[str, Any]] = {
    "model": {"hidden_size": 64, "num_layers": 2, "num_heads": 4, "intermediate_size": 256,
              "max_positions": 48},
    "sft": {"max_steps": 400, "batch_size": 64, "lr": 2e-3, "lr_schedule": "cosine",
            "warmup_steps": 20, "max_length": 32},
    "grpo": {"steps": 40, "prompts_per_step": 32, "group_size": 8, "max_new_tokens": 10,
             "lr": 5e-4, "temperature": 1.0, "sampler": "uniform", "loss_agg": "token",
             "adv_scale": "group", "clip_low": 0.2, "clip_high": 0.28},
}


class GRPOPilotSpec(Config):
    """`[pilot]` of a search spec with `pilot = "grpo"`.

    The held-out set (`n_eval` problems, equal per domain) and the cold-start
    SFT set (`n_sft`, equal per domain) are drawn once from the search seed; each
    pilot's RL pool (`steps x prompts_per_step` problems, the pilot's mixture) is
    drawn from the pilot's seed and decontaminated against the held-out set.
    """

    max_level: int = Field(default=2, ge=1, le=4)
    n_sft: int = Field(default=3000, ge=1)
    solution_noise: float = Field(default=0.0, ge=0, lt=1)
    n_eval: int = Field(default=1200, ge=1)
    eval_max_new_tokens: int = Field(default=10, ge=1)
    # pilot score per domain: pass@1 from eval_k samples at eval_temperature (0: greedy)
    eval_k: int = Field(default=4, ge=1)
    eval_temperature: float = Field(default=1.0, ge=0)
    eval_batch_size: int = Field(default=600, ge=1)
    threads: int = Field(default=1, ge=0)  # torch CPU threads; 0 = torch's default
    device: Literal["auto", "cpu", "cuda"] = "cpu"
    keep_checkpoints: bool = False  # pilots' final GRPO checkpoints (a few MB each)
    model: ModelSection = Field(default_factory=lambda: ModelSection(**PILOT_DEFAULTS["model"]))
    sft: SFTConfig = Field(default_factory=lambda: SFTConfig(**PILOT_DEFAULTS["sft"]))
    grpo: GRPOConfig = Field(default_factory=lambda: GRPOConfig(**PILOT_DEFAULTS["grpo"]))

    @model_validator(mode="before")
    @classmethod
    def _pilot_defaults(cls, data: Any) -> Any:
        reject_job_wide(data, ("sft", "grpo"), home="[pilot] (device) and [search] (seed)")
        if isinstance(data, dict):
            data = dict(data)
            for key, base in PILOT_DEFAULTS.items():
                if isinstance(data.get(key), dict):
                    data[key] = {**base, **data[key]}
        return data


class GRPOPilot:
    """Real pilots: cold-start SFT once, then a short GRPO per mixture, per-domain accuracy.

    ``GRPOPilot(spec, domains, out_dir, seed)(weights, seed, run_dir)`` returns
    ``{domain: held-out pass@1}`` for every domain of the held-out set
    (``eval_domains``, default: ``domains``). Each run writes its rollout log
    (``run_dir/rollouts``), its eval table (``run_dir/eval.parquet``) and
    ``run_dir/pilot.json`` (RL pool size per domain, timings, last-step reward).
    """

    def __init__(self, spec: GRPOPilotSpec, domains: Sequence[str], out_dir: str | Path,
                 seed: int = 0, eval_domains: Sequence[str] | None = None,
                 log: Callable[[str], None] = print) -> None:
        from curate.synthetic import DOMAINS

        self.spec = spec
        self.domains = list(domains)
        self.eval_domains = list(eval_domains or domains)
        unknown = sorted(set(self.domains + self.eval_domains) - set(DOMAINS))
        if unknown:
            raise ValueError(f"grpo pilot: unknown synthetic domain(s) {unknown}; "
                             f"curate.synthetic has {list(DOMAINS)}")
        self.out = Path(out_dir)
        self.seed = seed
        self.log = log
        self._model = self._tok = self._eval = None
        self._eval_ids: set[str] = set()

    # ------------------------------------------------------------ cold start
    @property
    def cold_dir(self) -> Path:
        return self.out / "cold_start"

    def _setup_torch(self) -> None:
        import torch

        from trainer.modeling import quiet_transformers

        if self.spec.threads:
            torch.set_num_threads(self.spec.threads)
        quiet_transformers()

    def cold_start(self):
        """(model, tokenizer, held-out table): trained once, then read from OUT/cold_start."""
        if self._model is not None:
            return self._model, self._tok, self._eval
        import pyarrow.parquet as pq

        from curate.synthetic import make_splits
        from trainer.modeling import auto_device, load_pretrained
        from trainer.sft import cold_start

        self._setup_torch()
        sp, cold = self.spec, self.cold_dir
        dev, _ = auto_device(sp.device)
        final = cold / "sft" / "final"
        eval_path = cold / "held_out.parquet"
        if (final / "config.json").exists() and eval_path.exists():
            model, tok = load_pretrained(final, dev)
            held_out = pq.read_table(eval_path)
        else:
            t = time.perf_counter()
            sft_set, held_out = make_splits(sp.n_sft, sp.n_eval, self.eval_domains, seed=self.seed,
                                            max_level=sp.max_level,
                                            solution_noise=sp.solution_noise, shuffle=True)
            write_parquet_atomic(sft_set, cold / "sft_set.parquet")
            sft_cfg = sp.sft.model_copy(update={"device": sp.device, "seed": self.seed})
            model, tok, _ = cold_start(lambda: build_model(sp.model, self.seed, sp.device), sft_set,
                                       sft_cfg, cold / "sft", reuse=False)
            n_params = sum(p.numel() for p in model.parameters())
            write_json_atomic({"params": n_params, "sft_rows": sft_set.num_rows,
                               "held_out_rows": held_out.num_rows,
                               "seconds": time.perf_counter() - t}, cold / "cold_start.json")
            write_parquet_atomic(held_out, eval_path)  # last: marks the cold start complete
            self.log(f"cold start: {n_params / 1e6:.2f}M-parameter model, SFT on "
                     f"{sft_set.num_rows} rows in {time.perf_counter() - t:.0f}s")
        self._model, self._tok, self._eval = model.eval(), tok, held_out
        self._eval_ids = set(held_out.column("id").to_pylist())
        return self._model, self._tok, self._eval

    def _eval_settings(self) -> dict[str, Any]:
        sp = self.spec
        return {"k": sp.eval_k, "temperature": sp.eval_temperature,
                "max_new_tokens": sp.eval_max_new_tokens, "domains": self.eval_domains}

    def reference_scores(self) -> dict[str, float]:
        """Held-out scores of the cold start (before any pilot's GRPO), cached."""
        model, tok, held_out = self.cold_start()
        path = self.cold_dir / "reference.json"
        if path.exists():
            ref = json.loads(path.read_text())
            if ref.get("eval") == self._eval_settings():
                return ref["scores"]
        self._setup_torch()
        scores = self._evaluate(model, tok, held_out, self.cold_dir, "cold_start", self.seed)
        write_json_atomic({"eval": self._eval_settings(), "scores": scores}, path)
        self.log("cold start held-out: " + " ".join(f"{d}={v:.3f}" for d, v in scores.items()))
        return scores

    def _evaluate(self, model, tok, held_out, run_dir: Path, phase: str, seed: int
                  ) -> dict[str, float]:
        """Per-domain pass@1: greedy (eval_temperature = 0) or the mean of eval_k samples."""
        from trainer.evaluation import accuracy_by_domain, evaluate

        sp = self.spec
        table = evaluate(model, tok, held_out, sp.eval_max_new_tokens, phase=phase,
                         batch_size=sp.eval_batch_size, k=sp.eval_k,
                         temperature=sp.eval_temperature, seed=seed)
        write_parquet_atomic(table, run_dir / "eval.parquet")
        by = accuracy_by_domain(table)
        return {d: float(by.get(d, 0.0)) for d in self.eval_domains}

    # ----------------------------------------------------------------- pilot
    def rl_pool(self, weights: dict[str, float], seed: int):
        """The pilot's RL pool: `steps x prompts_per_step` problems in the mixture's shares."""
        import pyarrow as pa

        from curate.synthetic import make_splits

        g = self.spec.grpo
        w = np.array([max(0.0, float(weights.get(d, 0.0))) for d in self.domains])
        keep = w > 1e-9
        doms = [d for d, k in zip(self.domains, keep, strict=True) if k]
        n = g.steps * g.prompts_per_step
        # a stream of its own (never the cold start's seed), decontaminated against held-out
        pool, _ = make_splits(2 * n, len(doms), doms, w[keep].tolist(), seed=10_007 + seed,
                              max_level=self.spec.max_level, shuffle=True)
        clean = pa.array([i not in self._eval_ids for i in pool.column("id").to_pylist()])
        pool = pool.filter(clean)
        # exact shares (largest remainder), so decontamination does not tilt the mixture
        from sampling.quota import largest_remainder

        quota = largest_remainder(n, w[keep])
        dom = np.asarray(pool.column("domain").to_pylist())
        idx = np.concatenate([np.flatnonzero(dom == d)[:k] for d, k in zip(doms, quota, strict=True)])
        return pool.take(np.sort(idx))

    def __call__(self, weights: dict[str, float], seed: int, run_dir: Path) -> dict[str, float]:
        from trainer.grpo import GRPOTrainer

        model, tok, held_out = self.cold_start()
        self._setup_torch()
        t = time.perf_counter()
        run_dir = Path(run_dir)
        for sub in ("rollouts", "stats", "checkpoints"):  # a killed earlier attempt restarts
            shutil.rmtree(run_dir / sub, ignore_errors=True)
        pool = self.rl_pool(weights, seed)
        g = self.spec.grpo
        cfg = g.model_copy(update={"seed": seed, "device": self.spec.device,
                                   "save_every": g.steps, "keep_checkpoints": 1})
        trainer = GRPOTrainer(copy.deepcopy(model), tok, pool, cfg, run_dir, run_id=run_dir.name,
                              resume=False)
        history = trainer.train()
        t_train = time.perf_counter() - t
        scores = self._evaluate(trainer.model, tok, held_out, run_dir, "pilot", seed)
        if not self.spec.keep_checkpoints:
            shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
        doms = pool.column("domain").to_pylist()
        tail = history[-max(1, len(history) // 4):]
        write_json_atomic({
            "weights": weights, "seed": seed, "rl_rows": {d: doms.count(d) for d in self.domains},
            "grpo_steps": trainer.step, "train_reward_last_quarter": float(np.mean([m.reward for m in tail])),
            "train_accuracy_last_quarter": float(np.nanmean([m.accuracy for m in tail])),
            "seconds": {"grpo": t_train, "eval": time.perf_counter() - t - t_train},
        }, run_dir / "pilot.json")
        return scores


# ----------------------------------------------------------------------- spec
class SearchSection(Config):
    """`[search]` of a mixture-search spec.

    Parameters:
        domains: the domains whose mixture is searched (at least 2).
        pilot: "simulated" (a seeded analytic stand-in) or "grpo" (real training); default "simulated".
        target: "mean" over domains, one domain, or a list of domains (default "mean").
        n_pilots: pilot mixtures proposed (default 12).
        strategy: proposal strategy of `curate.mixture.propose` (default "mixed").
        seed: the seed of the search, its cold start and its proposals (default 0).
        confirm_seeds: seeds of the final best-vs-uniform confirmation (default 3).
        maximize: higher score is better (default true).
        models: predictors fitted (default linear, quadratic, exp, kernel).
        bounds: per-domain (low, high) weight bounds (default none).
        out: output directory (default "runs/mixture_search").
        interactions: simulated pilot only: the domain interaction matrix.
        noise: simulated pilot only: score noise (default 0.01).
    """

    domains: list[str] = Field(min_length=2)
    pilot: Literal["simulated", "grpo"] = "simulated"
    target: Target = "mean"
    n_pilots: int = Field(default=12, ge=3)
    strategy: str = "mixed"
    seed: int = 0
    confirm_seeds: int = Field(default=3, ge=1)
    maximize: bool = True
    models: list[str] = Field(default_factory=lambda: ["linear", "quadratic", "exp", "kernel"])
    bounds: dict[str, tuple[float, float]] = Field(default_factory=dict)
    out: str = "runs/mixture_search"
    # simulated pilot only
    interactions: list[list[float]] | None = None
    noise: float = Field(default=0.01, ge=0)


class SearchSpec(Config):
    """A mixture-search spec: `[search]` and, for grpo pilots, `[pilot]`."""

    search: SearchSection
    pilot: GRPOPilotSpec | None = None


def load_search_spec(spec_path: str) -> SearchSpec:
    """The validated spec; a problem is a ConfigError naming the file and the key."""
    spec = SearchSpec.from_dict(read_toml(spec_path), source=spec_path)
    s = spec.search
    targets = _target_domains(s.target)
    if s.pilot == "simulated" and any(t not in s.domains for t in targets):
        raise ConfigError(f"{spec_path}: search.target {s.target!r} names a domain not in "
                          f"search.domains {s.domains}")
    unknown_bounds = sorted(set(s.bounds) - set(s.domains))
    if unknown_bounds:
        raise ConfigError(f"{spec_path}: search.bounds names unknown domain(s) {unknown_bounds}")
    if s.pilot != "grpo" and spec.pilot is not None:
        raise ConfigError(f"{spec_path}: a [pilot] table is for pilot = \"grpo\" "
                          f"(this spec has pilot = {s.pilot!r})")
    return spec


def run_search_cli(spec_path: str, out: str | None) -> int:
    """`thresher mixture search`: load the spec, run the search, write summary.json."""
    spec = load_search_spec(spec_path)
    s = spec.search
    out_dir = Path(out or s.out)
    t0 = time.perf_counter()
    reference = None
    if s.pilot == "simulated":
        d = len(s.domains)
        A = np.asarray(s.interactions if s.interactions is not None else np.eye(d), dtype=float)
        if A.shape != (d, d):
            raise ConfigError(f"{spec_path}: search.interactions must be {d}x{d}")
        pilot: PilotFn = simulated_pilot(A, s.noise)
    else:
        targets = _target_domains(s.target)
        eval_domains = list(dict.fromkeys([*s.domains, *targets]))
        try:
            grpo = GRPOPilot(spec.pilot or GRPOPilotSpec(), s.domains, out_dir, s.seed,
                             eval_domains=eval_domains)
        except ValueError as exc:
            raise ConfigError(f"{spec_path}: {exc}") from None
        # finished runs are reused on a re-run: only when they were made with the same pilot
        made = {"domains": s.domains, "seed": s.seed,
                "pilot": (spec.pilot or GRPOPilotSpec()).model_dump(mode="json")}
        stamp = out_dir / "pilot_settings.json"
        if stamp.exists() and json.loads(stamp.read_text()) != made:
            raise DataError(f"{out_dir} holds a search made with other [pilot] settings, "
                            "domains or seed (pilot_settings.json); use another --out or delete it")
        write_json_atomic(made, stamp)
        write_text_atomic(Path(spec_path).read_text(), out_dir / "spec.toml")
        ref = grpo.reference_scores()  # trains (or reads) the shared cold start first
        pilot, reference = grpo, lambda: ref
    bounds = {k: tuple(v) for k, v in s.bounds.items()} or None
    summary = run_search(s.domains, pilot, out_dir, n_pilots=s.n_pilots, strategy=s.strategy,
                         seed=s.seed, confirm_seeds=s.confirm_seeds, maximize=s.maximize,
                         target=s.target, models=s.models, bounds=bounds, reference=reference)
    summary["pilot"] = s.pilot
    summary["wall_seconds"] = time.perf_counter() - t0  # this invocation (a resumed run: less)
    write_json_atomic(summary, out_dir / "summary.json")
    print(f"done in {summary['wall_seconds']:.0f}s; summary: {out_dir / 'summary.json'}")
    return 0
