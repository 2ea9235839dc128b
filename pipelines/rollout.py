"""`thresher rollout` and the `rollout` curation stage: load a model and data, sample, verify.

The sampling itself is `trainer.rollout.run_rollouts`; this module resolves what
the user named:

- a model: a local directory saved with `save_pretrained` (model + tokenizer), or
  a TOML config with a ``[model]`` section (e.g. ``examples/quickstart.toml``:
  the tiny character-level Qwen2 built from a config, seeded by ``[run].seed``);
- data: a curated folder (``part-*.parquet``), a Parquet file, or JSONL / JSON
  rows in the Sample schema (at least ``prompt`` and ``answer``).

>>> load_model("no/such/model")
Traceback (most recent call last):
...
trainer.rollout.RolloutInputError: --model 'no/such/model' does not exist: give a local model directory (save_pretrained) or a TOML config with a [model] section
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from curate.config import signature_model
from curate.stage import SpecView, StageContext, StageOutput, Step
from trainer.rollout import RolloutInputError, RolloutSettings, VLLMEngine, run_rollouts


def load_model(spec: str | os.PathLike, device: str = "auto", seed: int | None = None):
    """(model, tokenizer, description) for a model directory or a TOML config.

    On CUDA the model runs in bf16 (fp16 where bf16 is unsupported); on CPU in fp32.
    """
    from trainer.modeling import (
        TinyModelSpec,
        auto_device,
        build_tiny_model,
        char_tokenizer,
        load_pretrained,
    )

    path = Path(spec)
    if not path.exists():
        raise RolloutInputError(f"--model {str(spec)!r} does not exist: give a local model directory "
                                "(save_pretrained) or a TOML config with a [model] section")
    dev, dtype = auto_device(device)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise RolloutInputError(f"--model {str(spec)!r}: no config.json in this directory; "
                                    "expected a model saved with save_pretrained")
        try:
            model, tok = load_pretrained(path, dev, dtype=dtype)
        except (OSError, ValueError) as exc:
            raise RolloutInputError(f"--model {str(spec)!r}: cannot load a causal LM and its "
                                    f"tokenizer: {exc}") from exc
        return model, tok, {"kind": "pretrained", "path": str(path), "dtype": str(dtype)}
    if path.suffix != ".toml":
        raise RolloutInputError(f"--model {str(spec)!r}: expected a model directory or a .toml "
                                f"config, got a {path.suffix or 'suffix-less'} file")
    from pipelines.job import ModelSection

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise RolloutInputError(f"--model {path}: invalid TOML: {exc}") from None
    if "model" not in data:
        raise RolloutInputError(f"--model {path}: no [model] section (the model's shape or path)")
    try:
        cfg = ModelSection.model_validate(data["model"])
    except Exception as exc:  # pydantic's message names the key
        raise RolloutInputError(f"--model {path}: [model]: {exc}") from None
    if cfg.path:
        base = Path(cfg.path) if Path(cfg.path).is_absolute() else path.parent / cfg.path
        return load_model(base, device, seed)
    seed = int(data.get("run", {}).get("seed", 0)) if seed is None else seed
    if data.get("data", {}).get("suite") == "vision":  # a tiny Qwen2-VL, as `thresher run` builds it
        from pipelines.job import build_model

        model, tok = build_model(cfg, seed, device, vision=True)
        return model, tok, {"kind": "tiny-vlm-from-config", "config": str(path), "seed": seed,
                            "shape": cfg.model_dump(), "dtype": str(dtype)}
    tok = char_tokenizer()
    shape = TinyModelSpec(cfg.hidden_size, cfg.num_layers, cfg.num_heads, cfg.intermediate_size,
                          cfg.max_positions)
    model = build_tiny_model(tok, shape, seed=seed).to(dev)
    if dev.type == "cuda":
        model = model.to(dtype)
    return model, tok, {"kind": "tiny-from-config", "config": str(path), "seed": seed,
                        "shape": cfg.model_dump(), "dtype": str(dtype)}


def read_data(spec: str | os.PathLike, limit: int | None = None) -> pa.Table:
    """Sample rows from a curated folder, a Parquet file or a JSONL / JSON file.

    >>> read_data("no/such.parquet")
    Traceback (most recent call last):
    ...
    trainer.rollout.RolloutInputError: data 'no/such.parquet' does not exist
    """
    path = Path(spec)
    if not path.exists():
        raise RolloutInputError(f"data {str(spec)!r} does not exist")
    if path.is_dir():
        files = sorted(path.glob("part-*.parquet")) or sorted(path.glob("*.parquet"))
        if not files:
            raise RolloutInputError(f"data {str(spec)!r}: a folder without Parquet files "
                                    "(expected a curated set: part-*.parquet)")
        table = pa.concat_tables([pq.read_table(f) for f in files], promote_options="default")
    elif path.suffix == ".parquet":
        table = pq.read_table(path)
    elif path.suffix in (".jsonl", ".json"):
        try:
            df = pl.read_ndjson(path) if path.suffix == ".jsonl" else pl.read_json(path)
        except Exception as exc:
            raise RolloutInputError(f"data {str(spec)!r}: not readable as {path.suffix[1:]}: {exc}") from None
        table = df.to_arrow()
    else:
        raise RolloutInputError(f"data {str(spec)!r}: expected a curated folder, .parquet, .jsonl "
                                f"or .json, got {path.suffix or 'no suffix'}")
    if limit is not None:
        table = table.slice(0, limit)
    return table


def rollout_data(data: str | os.PathLike | pa.Table, model: str, out: str | os.PathLike,
                 settings: RolloutSettings, *, device: str = "auto", limit: int | None = None,
                 progress: bool = True, where: str | None = None) -> dict[str, Any]:
    """Read data, load the model (or vLLM), run `run_rollouts`; returns the manifest."""
    table = data if isinstance(data, pa.Table) else read_data(data, limit)
    where = where or (str(data) if not isinstance(data, pa.Table) else "data")
    from trainer.rollout import check_samples

    # before loading a model: bad data fails fast (image rows are checked against the model later)
    table = check_samples(table, where, images_ok=True)
    source = {"data": where, "model": str(model), "rows": table.num_rows}
    if settings.engine == "vllm":
        import importlib.util

        if importlib.util.find_spec("vllm") is None:
            raise RolloutInputError("--engine vllm: vLLM is not installed here (it needs a CUDA GPU "
                                    "machine: pip install vllm); use --engine hf")
        path = Path(model)
        if not path.is_dir():
            raise RolloutInputError(f"--engine vllm needs a model directory, got {str(model)!r}")
        engine = VLLMEngine(str(path), settings)
        return run_rollouts(table, None, None, out, settings, engine=engine, source=source,
                            progress=progress)
    m, tok, desc = load_model(model, device)
    source["model_info"] = desc
    return run_rollouts(table, m, tok, out, settings, source=source, progress=progress)


def rollout(df: pl.DataFrame, *, model: str, out: str, k: int = 8, max_new_tokens: int = 64,
            temperature: float = 1.0, top_p: float = 1.0, seed: int = 0, batch_prompts: int = 16,
            engine: str = "hf", device: str = "auto") -> StageOutput:
    """Curation stage: sample `k` responses per row into the run folder `out`, then
    write each row's pass rate to `difficulty` and its count to `n_rollouts`.

    Drops nothing (follow it with the `difficulty` stage to keep a band). The
    sampling resumes: rows already in `out`'s log are not sampled again.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "tiny.toml").write_text("[model]\\nhidden_size = 16\\nnum_layers = 1\\n"
    ...                                  "num_heads = 2\\nintermediate_size = 32\\n")
    >>> df = pl.DataFrame({"id": ["a", "b"], "prompt": ["1+1=", "2+2="], "answer": ["2", "4"]})
    >>> out = rollout(df, model=str(d / "tiny.toml"), out=str(d / "run"), k=2, max_new_tokens=3)
    >>> out.kept.select("id", "difficulty", "n_rollouts").rows(), out.info["responses"]
    ([('a', 0.0, 2), ('b', 0.0, 2)], 4)
    """
    from curate.difficulty import read_pass_rates

    settings = RolloutSettings(k=k, max_new_tokens=max_new_tokens, temperature=temperature,
                               top_p=top_p, seed=seed, batch_prompts=batch_prompts, engine=engine)
    manifest = rollout_data(df.to_arrow(), model, out, settings, device=device, progress=False,
                            where="rollout stage input")
    rates = read_pass_rates(out)
    kept = df.drop([c for c in ("difficulty", "n_rollouts") if c in df.columns]).join(
        rates.select(pl.col("sample_id").alias("id"), pl.col("pass_rate").alias("difficulty"),
                     pl.col("n").alias("n_rollouts")), on="id", how="left")
    r = manifest["rollout"]
    return StageOutput(kept=kept.select(df.columns + [c for c in ("difficulty", "n_rollouts")
                                                      if c not in df.columns]),
                       info={"run": str(out), "responses": r["responses"],
                             "prompts_sampled": r["prompts_sampled"], "seconds": r["seconds"]})


class Rollout(Step):
    """The `rollout` curation stage: `rollout` with `model` and `out` resolved against the
    spec file's folder. See `rollout` for the keys and a run.

    >>> from curate.stage import SpecView
    >>> Rollout.validate({"model": "m.toml", "out": "run", "k": 4}, spec=SpecView(base=Path("/d")))
    {'model': '/d/m.toml', 'out': '/d/run', 'k': 4}
    >>> Rollout.validate({"model": "m.toml", "out": "run", "kk": 4})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    curate.errors.ConfigError: stage (rollout): unknown key 'kk'...
    """

    name = "rollout"
    Params = signature_model(rollout, name, skip_first=True)

    @classmethod
    def check(cls, params: dict, spec: SpecView, where: str) -> dict:
        for key in ("model", "out"):
            if params.get(key):
                params = {**params, key: spec.resolve(params[key])}
        return params

    def run(self, df: pl.DataFrame, ctx: StageContext) -> StageOutput:
        return rollout(df, **self.kwargs)
