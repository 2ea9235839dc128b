"""The end-to-end jobs behind `thresher run` and `thresher train`.

`thresher run CONFIG`: generate the synthetic suite -> curate the RL and
cold-start sets (exact dedup + decontamination against the held-out split)
-> cold-start SFT -> held-out eval -> GRPO with the configured sampler ->
held-out eval -> manifest. With `[data] suite = "vision"` the suite is the
visual one (curate.synthetic_vision: image questions), the model a tiny
Qwen2-VL, curation checks the images and de-duplicates by text + image, and
every evaluation is repeated with each image blanked (the control that says
how much of the accuracy needs the image; manifest `eval.blank_image`). Every stage writes into the run directory (layout
in ../shared/layout) and is skipped on a re-run when its output exists, so a
killed job resumes where it stopped (GRPO from its newest checkpoint).

`thresher train CONFIG`: the same model/SFT/GRPO machinery on Parquet/JSONL
files you already have (`[data] sft = ...`, `rl = ...`, `eval = ...`).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from curate.config import Config, read_toml
from curate.errors import ConfigError
from curate.io import read_table, write_json_atomic, write_parquet_atomic, write_text_atomic
from curate.lazy import lazy_import
from trainer.config import GRPOConfig, SFTConfig

if TYPE_CHECKING:
    import pyarrow as pa
else:  # loaded on first use, so reading a config stays fast (see curate.lazy)
    pa = lazy_import("pyarrow")

# Set once per job, in [run]: the trainers' own `seed` / `device` come from there.
JOB_WIDE = ("seed", "device")


def reject_job_wide(data: Any, sections: tuple[str, ...], home: str = "[run]") -> Any:
    """The one rule for `seed` and `device`: set once for the whole job, in `home`.

    A trainer section that sets them is an error that says so, instead of a
    silent override.
    """
    if isinstance(data, dict):
        for section in sections:
            body = data.get(section)
            for key in JOB_WIDE:
                if isinstance(body, dict) and key in body:
                    raise ValueError(f"{section}.{key}: {key} is set once for the whole job, in "
                                     f"{home} (it applies to every stage); move it there")
    return data


class RunSection(Config):
    """`[run]`: where the run lives and the settings of the whole job.

    Parameters:
        dir: the run directory (default "runs/quickstart"); `--run-dir` overrides it.
        name: the run_id of the rollout log (default: the folder name).
        seed: the seed of every stage of the job: data, model, SFT, GRPO, eval (default 0).
        device: "auto" (CUDA + bf16 when present, else CPU fp32), "cpu" or "cuda", for
            every stage of the job (default "auto").
        threads: torch CPU threads (default 0: torch's default).
    """

    dir: str = "runs/quickstart"
    name: str | None = None
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int = Field(default=0, ge=0)  # torch CPU threads; 0 = torch's default


class SyntheticData(Config):
    """`[data]` of `thresher run`: the synthetic suite (curate.synthetic or curate.synthetic_vision).

    Parameters:
        suite: "text" (curate.synthetic) or "vision" (image questions,
            curate.synthetic_vision; trains a tiny vision-language model) (default "text").
        domains: task families (default add, mul, cmp, count, sort; for the vision
            suite: bars, majority, vcount, cell).
        weights: share of each domain (default None: equal).
        max_level: difficulty knob, digits / lengths, 1-4 (default 2).
        n_rl: RL pool size before curation (default 6000).
        n_sft: cold-start pool size (default 2000).
        n_eval: held-out problems (default 500).
        solution_noise: share of cold-start solutions with a near-miss wrong answer, a
            fallible teacher (default 0.0).
        noise_style: "random" near misses or one "systematic" misconception per domain
            (default "random").
    """

    suite: Literal["text", "vision"] = "text"
    domains: list[str] = Field(default_factory=lambda: ["add", "mul", "cmp", "count", "sort"])
    weights: list[float] | None = None
    max_level: int = Field(default=2, ge=1, le=4)
    n_rl: int = Field(default=6000, ge=1)
    n_sft: int = Field(default=2000, ge=1)
    n_eval: int = Field(default=500, ge=1)
    # share of cold-start solutions that hold a near-miss wrong answer (a fallible teacher)
    solution_noise: float = Field(default=0.0, ge=0, lt=1)
    # how the teacher is wrong: near misses on random rows, or one misconception per
    # domain applied consistently (curate.synthetic.teacher_bug)
    noise_style: Literal["random", "systematic"] = "random"

    @model_validator(mode="before")
    @classmethod
    def _suite_domains(cls, data: Any) -> Any:
        """The vision suite's own default domains; every domain checked against its suite."""
        from curate.suites import SUITES  # names only: no data library loads to check a config

        if not isinstance(data, dict) or data.get("suite", "text") not in SUITES:
            return data  # a bad suite is reported by the field's own check
        known = SUITES[data.get("suite", "text")]
        if data.get("suite") == "vision":
            data = {"domains": list(known), **data}
        bad = [d for d in data.get("domains", []) if d not in known]
        if bad:
            raise ValueError(f"unknown domain(s) {bad} for suite {data.get('suite', 'text')!r}; "
                             f"expected some of {list(known)}")
        return data


class FileData(Config):
    """`[data]` of `thresher train`: Sample-schema files (Parquet, JSONL or a folder of Parquet).

    Parameters:
        sft: the cold-start set (default None).
        rl: the RL set (default None).
        eval: the held-out set (default None).
    """

    sft: str | None = None
    rl: str | None = None
    eval: str | None = None


class ModelSection(Config):
    """`[model]`: a local pretrained model (`path`) or a tiny Qwen2 built from this shape
    (a tiny Qwen2-VL with the vision suite, its tower shaped by the `vision_*` keys).

    Parameters:
        path: a local model folder (default None: build the tiny model below).
        hidden_size: default 128.
        num_layers: default 3.
        num_heads: default 4.
        intermediate_size: default 512.
        max_positions: default 64.
        vision_dim: width of the vision tower (vision suite only; default 32).
        vision_depth: blocks of the vision tower (vision suite only; default 1).
        vision_heads: attention heads of the vision tower (vision suite only; default 2).
        patch_size: pixels per patch side; a 32x32 image with 4 is 8x8 patches, 16
            tokens after the 2x2 merge (vision suite only; default 4).
        family: "qwen2_vl", "qwen2_5_vl" (window attention in the tower) or "llava" (a
            SigLIP tower, 1-D positions) (vision suite only; default "qwen2_vl").
    """

    path: str | None = None
    hidden_size: int = Field(default=128, ge=8)
    num_layers: int = Field(default=3, ge=1)
    num_heads: int = Field(default=4, ge=1)
    intermediate_size: int = Field(default=512, ge=8)
    max_positions: int = Field(default=64, ge=16)
    vision_dim: int = Field(default=32, ge=4)
    vision_depth: int = Field(default=1, ge=1)
    vision_heads: int = Field(default=2, ge=1)
    patch_size: int = Field(default=4, ge=1)
    family: Literal["qwen2_vl", "qwen2_5_vl", "llava"] = "qwen2_vl"


class EvalSection(Config):
    """`[eval]`: held-out pass@1 from `k` samples at `temperature` (0 = greedy only).

    Greedy accuracy is always measured too and reported beside it.

    Parameters:
        max_new_tokens: response length cap (default 12).
        batch_size: prompts per generation batch (default 512).
        k: samples per prompt (default 4).
        temperature: sampling temperature (default 1.0; 0 = greedy only).
    """

    max_new_tokens: int = Field(default=12, ge=1)
    batch_size: int = Field(default=512, ge=1)
    k: int = Field(default=4, ge=1)
    temperature: float = Field(default=1.0, ge=0)


class _JobConfig(Config):
    """A job config: `seed` and `device` are set once, in [run], for every stage."""

    @model_validator(mode="before")
    @classmethod
    def _job_wide(cls, data: Any) -> Any:
        return reject_job_wide(data, ("sft", "grpo"))

    def stage_config(self, section: SFTConfig | GRPOConfig) -> Any:
        """A trainer section with the job's seed and device (from [run])."""
        run: RunSection = self.run  # type: ignore[attr-defined]
        return section.model_copy(update={"seed": run.seed, "device": run.device})


class RunConfig(_JobConfig):
    """`thresher run` config: [run], [data], [model], [sft], [grpo], [eval].

    `seed` and `device` are set once, in [run], for every stage (`reject_job_wide`).
    """

    run: RunSection = Field(default_factory=RunSection)
    data: SyntheticData = Field(default_factory=SyntheticData)
    model: ModelSection = Field(default_factory=ModelSection)
    sft: SFTConfig = Field(default_factory=SFTConfig)
    grpo: GRPOConfig = Field(default_factory=GRPOConfig)
    eval: EvalSection = Field(default_factory=EvalSection)


class TrainConfig(_JobConfig):
    """`thresher train` config: [run], [data] files, [model], optional [sft] and/or [grpo].

    `seed` and `device` are set once, in [run], for every stage.
    """

    run: RunSection = Field(default_factory=RunSection)
    data: FileData = Field(default_factory=FileData)
    model: ModelSection = Field(default_factory=ModelSection)
    sft: SFTConfig | None = None
    grpo: GRPOConfig | None = None
    eval: EvalSection = Field(default_factory=EvalSection)


def load_config(path: str | os.PathLike, kind: type[Config] = RunConfig) -> Config:
    """Parse and validate a TOML config; a problem is a ConfigError naming the file,
    the section, the key and what is allowed."""
    return kind.from_dict(read_toml(path), source=str(path))


def to_toml(data: dict[str, Any]) -> str:
    """Minimal TOML writer for resolved configs (tables of scalars, lists, dicts)."""

    def val(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(val(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {val(x)}" for k, x in v.items()) + " }"
        raise TypeError(f"cannot write {type(v).__name__} to TOML")

    lines = []
    for section, body in data.items():
        if body is None:
            continue
        lines.append(f"[{section}]")
        lines += [f"{k} = {val(v)}" for k, v in body.items() if v is not None]
        lines.append("")
    return "\n".join(lines)


# ----------------------------------------------------------------- helpers
def _console():
    from rich.console import Console

    return Console(highlight=False)


def build_model(cfg: ModelSection, seed: int, device: str, vision: bool = False):
    """(model, tokenizer): a local pretrained model, or a tiny char-level Qwen2
    (a tiny Qwen2-VL with `vision`)."""
    from trainer.modeling import (
        TinyModelSpec,
        auto_device,
        build_tiny_model,
        char_tokenizer,
        load_pretrained,
    )

    dev, _ = auto_device(device)
    if cfg.path:
        return load_pretrained(cfg.path, dev)
    if vision:
        from trainer.vision import TinyVLMSpec, build_tiny_vlm, vision_tokenizer

        tok = vision_tokenizer()
        spec = TinyVLMSpec(cfg.hidden_size, cfg.num_layers, cfg.num_heads, cfg.intermediate_size,
                           cfg.max_positions, cfg.vision_depth, cfg.vision_dim, cfg.vision_heads,
                           cfg.patch_size, family=cfg.family)
        return build_tiny_vlm(tok, spec, seed=seed).to(dev), tok
    tok = char_tokenizer()
    spec = TinyModelSpec(cfg.hidden_size, cfg.num_layers, cfg.num_heads, cfg.intermediate_size,
                         cfg.max_positions)
    return build_tiny_model(tok, spec, seed=seed).to(dev), tok


# -------------------------------------------------------------- data stage
def build_data(cfg: RunConfig, run_dir: Path, console) -> dict[str, Any]:
    """Synthetic suite -> curation -> RUN/data/{rl,sft,eval}; returns the data manifest."""
    from curate.synthetic import make_splits

    d = cfg.data
    data_dir = run_dir / "data"
    done = data_dir / "manifest.json"
    if done.exists():
        return json.loads(done.read_text())
    if d.suite == "vision":  # images written once, named by sha256, under RUN/data/images
        from curate.synthetic_vision import make_vision_splits

        train, held_out = make_vision_splits(d.n_rl + d.n_sft, d.n_eval, data_dir / "images",
                                             d.domains, d.weights, seed=cfg.run.seed,
                                             max_level=d.max_level, solution_noise=d.solution_noise,
                                             noise_style=d.noise_style)
    else:
        train, held_out = make_splits(d.n_rl + d.n_sft, d.n_eval, d.domains, d.weights,
                                      seed=cfg.run.seed, max_level=d.max_level,
                                      solution_noise=d.solution_noise, noise_style=d.noise_style)
    # disjoint RL and cold-start pools, each keeping the domain mix (rows are grouped by domain)
    import numpy as np

    rng = np.random.default_rng(cfg.run.seed)
    order = rng.permutation(train.num_rows)
    # small levels have few distinct problems: then split what exists in the asked proportion
    n_sft = min(d.n_sft, round(train.num_rows * d.n_sft / (d.n_rl + d.n_sft)))
    sft_raw, rl_raw = train.take(np.sort(order[:n_sft])), train.take(np.sort(order[n_sft:]))
    raw = data_dir / "raw"
    write_parquet_atomic(held_out, data_dir / "eval" / "eval.parquet")
    write_parquet_atomic(rl_raw, raw / "rl.parquet")
    write_parquet_atomic(sft_raw, raw / "sft.parquet")
    manifest: dict[str, Any] = {"generated": {"rl": rl_raw.num_rows, "sft": sft_raw.num_rows,
                                              "eval": held_out.num_rows}}
    for name in ("rl", "sft"):
        manifest[name] = curate_split(raw / f"{name}.parquet", data_dir / "eval" / "eval.parquet",
                                      data_dir / name, name, images=d.suite == "vision")
    write_json_atomic(manifest, done)
    how = "image checks + exact dedup by text and image" if d.suite == "vision" else \
        "exact dedup + decontamination"
    console.print(f"[bold]data[/] rl {manifest['rl']['rows']} rows, sft {manifest['sft']['rows']} rows,"
                  f" held-out {held_out.num_rows} rows (curated: {how})")
    return manifest


def curate_split(raw: Path, held_out: Path, out_dir: Path, name: str, images: bool = False
                 ) -> dict[str, Any]:
    """Run the curation room on one generated split: exact dedup + decontamination
    (image questions: image checks + exact dedup by text and image sha256)."""
    import pyarrow.parquet as pq

    from pipelines.curation import run_curation

    spec = curation_spec(raw, held_out, name, images)
    manifest = run_curation(spec, out_dir, progress=False)
    rows = sum(pq.read_metadata(p).num_rows for p in out_dir.glob("*.parquet"))
    return {"rows": rows, "rows_in": manifest.get("rows_in"), "dropped": manifest.get("dropped"),
            "manifest": str(out_dir / "manifest.json")}


def curation_spec(raw: Path, held_out: Path, name: str, images: bool = False) -> dict[str, Any]:
    """The curation spec `thresher run` uses for its synthetic sets (pipelines/spec.py shape).

    Image questions share a few prompt templates (``bar:tallest=`` for every bar
    chart), so text n-gram decontamination would match every row against the
    held-out set: their spec checks the images (`valid_images`) and de-duplicates
    by text + image sha256; the held-out split is disjoint by (prompt, image,
    answer) when generated (`make_vision_splits`).
    """
    if images:
        return {
            "name": f"synthetic-vision-{name}",
            "sources": [{"path": str(raw), "preset": "sample", "name": "thresher-synthetic-vision"}],
            "stages": [{"stage": "valid_images"}, {"stage": "dedup_exact"}],
        }
    return {
        "name": f"synthetic-{name}",
        "sources": [{"path": str(raw), "preset": "sample", "name": "thresher-synthetic"}],
        "eval_sets": [{"name": "held-out", "path": str(held_out), "preset": "sample"}],
        "stages": [{"stage": "dedup_exact"}, {"stage": "decontaminate"}],
    }


def read_split(run_dir: Path, name: str) -> pa.Table:
    files = sorted((run_dir / "data" / name).glob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"no Parquet files under {run_dir / 'data' / name}")
    import pyarrow.parquet as pq
    return pa.concat_tables([pq.read_table(f) for f in files], promote_options="default")


# --------------------------------------------------------------- the job
def run_job(cfg: RunConfig, run_dir: str | os.PathLike | None = None, progress: bool = True
            ) -> dict[str, Any]:
    """The main job; returns the run manifest (also written to RUN/manifest.json)."""
    import torch

    from pipelines.sampler_value import against_uniform, sampler_value
    from trainer.evaluation import accuracy, accuracy_by_domain, blank_images, evaluate
    from trainer.grpo import GRPOTrainer
    from trainer.modeling import quiet_transformers
    from trainer.sft import cold_start

    t_start = time.perf_counter()
    console = _console()
    quiet_transformers()
    if cfg.run.threads:
        torch.set_num_threads(cfg.run.threads)
    run_dir = Path(run_dir or cfg.run.dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(to_toml(cfg.model_dump()), run_dir / "config.toml")
    timings: dict[str, float] = {}

    t = time.perf_counter()
    data_manifest = build_data(cfg, run_dir, console)
    timings["data_s"] = time.perf_counter() - t
    rl, sft_set, held_out = read_split(run_dir, "rl"), read_split(run_dir, "sft"), read_split(run_dir, "eval")

    sft_cfg, grpo_cfg = cfg.stage_config(cfg.sft), cfg.stage_config(cfg.grpo)
    sft_final = run_dir / "checkpoints" / "sft" / "final"
    t = time.perf_counter()
    if (sft_final / "config.json").exists():
        console.print(f"[bold]sft[/] reusing {sft_final}")

    def announce(model) -> None:
        n_params = sum(p.numel() for p in model.parameters())
        console.print(f"[bold]model[/] {type(model).__name__}, {n_params / 1e6:.2f}M parameters")

    vision = cfg.data.suite == "vision"
    model, tok, _ = cold_start(lambda: build_model(cfg.model, cfg.run.seed, cfg.run.device, vision),
                               sft_set, sft_cfg, run_dir / "checkpoints" / "sft",
                               progress=progress, on_build=announce)
    timings["sft_s"] = time.perf_counter() - t

    ev = cfg.eval
    # the control: the same held-out questions with every image blanked
    blank = blank_images(held_out, run_dir / "data" / "images-blank") if vision else None

    def run_eval(m, step: int, phase: str, samples: pa.Table = held_out) -> pa.Table:
        path = run_dir / "eval" / f"{phase}.parquet"
        if path.exists():
            import pyarrow.parquet as pq
            return pq.read_table(path)
        parts = [evaluate(m, tok, samples, ev.max_new_tokens, step=step, phase=phase,
                          batch_size=ev.batch_size)]
        if ev.temperature > 0:
            parts.append(evaluate(m, tok, samples, ev.max_new_tokens, step=step, phase=phase,
                                  batch_size=ev.batch_size, k=ev.k, temperature=ev.temperature,
                                  seed=cfg.run.seed))
        table = pa.concat_tables(parts)
        write_parquet_atomic(table, path)
        return table

    def summary(table: pa.Table) -> dict[str, Any]:
        import polars as pl

        df = pl.from_arrow(table)
        out: dict[str, Any] = {}
        for mode in df["mode"].unique().sort().to_list():
            sub = df.filter(pl.col("mode") == mode).to_arrow()
            out[mode] = {"accuracy": accuracy(sub), "by_domain": accuracy_by_domain(sub)}
        return out

    def headline(s: dict[str, Any]) -> float:
        return s["sampled" if "sampled" in s else "greedy"]["accuracy"]

    cold = summary(run_eval(model, 0, "cold_start"))
    console.print(f"[bold]eval[/] cold start: held-out {_fmt_eval(cold)}")
    if blank is not None:
        cold_blank = summary(run_eval(model, 0, "cold_start_blank", blank))
        console.print(f"[bold]eval[/] cold start, images blanked: held-out {_fmt_eval(cold_blank)}")

    t = time.perf_counter()
    trainer = GRPOTrainer(model, tok, rl, grpo_cfg, run_dir, run_id=cfg.run.name or run_dir.name,
                          progress=progress)
    history = trainer.train()
    timings["grpo_s"] = time.perf_counter() - t

    final = summary(run_eval(trainer.model, trainer.step, "grpo"))
    acc0, acc1 = headline(cold), headline(final)
    blank_eval: dict[str, Any] = {}
    if blank is not None:
        final_blank = summary(run_eval(trainer.model, trainer.step, "grpo_blank", blank))
        blank_eval = {"blank_image": headline(final_blank), "blank_image_detail": final_blank,
                      "cold_start_blank_image": headline(cold_blank),
                      "cold_start_blank_image_detail": cold_blank}
    timings["total_s"] = time.perf_counter() - t_start
    gen_tokens = sum(m.tokens_per_s * m.seconds for m in history)
    gen_secs = sum(m.seconds for m in history)
    manifest = {
        "run_dir": str(run_dir), "run_id": cfg.run.name or run_dir.name,
        "device": str(trainer.device), "data": data_manifest, "timings": timings,
        "eval": {"metric": "sampled" if ev.temperature > 0 else "greedy",
                 "k": ev.k, "temperature": ev.temperature,
                 "cold_start": acc0, "grpo": acc1, "gain": acc1 - acc0,
                 "cold_start_detail": cold, "grpo_detail": final, **blank_eval},
        "grpo": {"steps": trainer.step, "sampler": grpo_cfg.sampler,
                 "tokens_per_s": gen_tokens / gen_secs if gen_secs else None,
                 "mean_informative_ratio": (sum(m.informative_ratio for m in history) / len(history))
                 if history else None},
        "sampler": sampler_value(run_dir),
    }
    write_json_atomic(manifest, run_dir / "manifest.json")
    sv = manifest["sampler"]
    if (compared := against_uniform(sv)) is not None:
        console.print(
            f"[bold]sampler[/] {grpo_cfg.sampler}: {sv['informative_ratio']:.3f} of its groups were "
            f"informative; {compared}. Calibration error of its estimates {sv['calibration_ece']:.3f}")
    console.print(f"[bold]eval[/] after GRPO: held-out {_fmt_eval(final)}")
    if blank_eval:
        console.print(f"[bold]eval[/] after GRPO, images blanked: held-out {_fmt_eval(final_blank)}")
    console.print(f"[bold]gain[/] {'+' if acc1 >= acc0 else ''}{100 * (acc1 - acc0):.1f} points "
                  f"of held-out pass@1 over the cold start")
    _print_footer(console, run_dir, timings["total_s"])
    return manifest


def _fmt_eval(s: dict[str, Any]) -> str:
    parts = []
    if "sampled" in s:
        parts.append(f"pass@1 (sampled) {s['sampled']['accuracy']:.3f}")
    parts.append(f"greedy {s['greedy']['accuracy']:.3f}")
    return ", ".join(parts)


def _print_footer(console, run_dir: Path, seconds: float) -> None:
    console.print(f"\n[bold green]done[/] in {seconds:.0f}s. Run directory: [bold]{run_dir}[/]")
    console.print("Query it with DuckDB (paste into `duckdb` or `thresher query`):")
    console.print(
        f"  SELECT step, avg(reward) AS reward, avg(correct::INT) AS accuracy, count(*) AS responses\n"
        f"  FROM read_parquet('{run_dir}/rollouts/*.parquet') GROUP BY step ORDER BY step;",
        soft_wrap=True,
    )


def _has_images(table: pa.Table) -> bool:
    """Whether any row of a Sample table references an image."""
    if "images" not in table.column_names:
        return False
    import pyarrow.compute as pc

    return bool(pc.any(pc.greater(pc.fill_null(pc.list_value_length(table.column("images")), 0),
                                  0)).as_py())


def train_job(cfg: TrainConfig, progress: bool = True) -> dict[str, Any]:
    """`thresher train`: SFT and/or GRPO on existing Sample-schema files (rows with
    images train a vision-language model: `[model] path` to one, or the tiny one
    built from `[model]`'s shape and `family`)."""
    import torch

    from trainer.evaluation import accuracy, evaluate
    from trainer.grpo import GRPOTrainer
    from trainer.modeling import quiet_transformers
    from trainer.sft import SFTTrainer

    if cfg.sft is None and cfg.grpo is None:
        raise ConfigError("config has neither [sft] nor [grpo]: nothing to train")
    console = _console()
    quiet_transformers()
    if cfg.run.threads:
        torch.set_num_threads(cfg.run.threads)
    run_dir = Path(cfg.run.dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(to_toml(cfg.model_dump()), run_dir / "config.toml")
    if cfg.sft is not None and not cfg.data.sft:
        raise ConfigError("[sft] needs [data] sft = 'file.parquet'")
    if cfg.grpo is not None and not cfg.data.rl:
        raise ConfigError("[grpo] needs [data] rl = 'file.parquet'")
    sft_rows = read_table(cfg.data.sft) if cfg.sft is not None else None
    rl_rows = read_table(cfg.data.rl) if cfg.grpo is not None else None
    # rows with images: the tiny model built from [model] is a vision-language one
    vision = any(t is not None and _has_images(t) for t in (sft_rows, rl_rows))
    model, tok = build_model(cfg.model, cfg.run.seed, cfg.run.device, vision)
    out: dict[str, Any] = {"run_dir": str(run_dir)}
    if cfg.sft is not None:
        sft = SFTTrainer(model, tok, sft_rows, cfg.stage_config(cfg.sft),
                         run_dir / "checkpoints" / "sft", progress=progress)
        hist = sft.train()
        out["sft"] = {"final_loss": hist[-1].loss, "model": str(sft.save())}
    if cfg.grpo is not None:
        trainer = GRPOTrainer(model, tok, rl_rows, cfg.stage_config(cfg.grpo), run_dir,
                              run_id=cfg.run.name or run_dir.name, progress=progress)
        trainer.train()
        out["grpo"] = {"steps": trainer.step}
        model = trainer.model
    if cfg.data.eval:
        table = evaluate(model, tok, read_table(cfg.data.eval), cfg.eval.max_new_tokens,
                         phase="train", batch_size=cfg.eval.batch_size)
        write_parquet_atomic(table, run_dir / "eval" / "train.parquet")
        out["eval_accuracy"] = accuracy(table)
        console.print(f"[bold]eval[/] held-out accuracy {out['eval_accuracy']:.3f}")
    write_json_atomic(out, run_dir / "manifest.json")
    if cfg.grpo is not None:
        _print_footer(console, run_dir, 0.0)
    return out
