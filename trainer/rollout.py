"""Sample K responses per prompt with a model and verify them: the rollout log that
difficulty filtering reads.

`run_rollouts` takes a Sample-schema table, a transformers causal LM and its
tokenizer, and writes the usual rollout log (`curate.rollout_log.RolloutWriter`,
one row per response) plus ``RUN/manifest.json``:

- prompts are sorted by token length and cut into batches of `batch_prompts`
  (little padding); each batch is one part ``part-<batch>-<seq>.parquet``
  (``step`` = the batch index), written atomically;
- each batch prefills every prompt once and samples `k` responses from its
  KV cache (`trainer.generation.generate_groups`, the trainer's own code),
  with a torch seed derived from `seed` and the batch's sample ids, so a batch
  samples the same responses whenever it runs;
- rewards are the project's verifiers (`trainer.rewards.verifiable_reward`:
  ``reward`` = ``correct``; `format_reward`: ``format_ok``);
- resumable: prompts whose ids are already in the log are not sampled again,
  and a killed run rerun gives the log an uninterrupted run gives;
- image prompts: with a vision-language model (`trainer.vision`) rows with
  `images` are sampled with their pictures (`VisionHFEngine`: images first,
  then the prompt, no chat template; the prompt's cache, vision tower
  included, shared by its k responses) and the log keeps each row's image
  references. A text-only LM refuses image rows, naming the row.

>>> import tempfile, pyarrow as pa
>>> from trainer.modeling import TinyModelSpec, build_tiny_model, char_tokenizer
>>> tok = char_tokenizer()
>>> model = build_tiny_model(tok, TinyModelSpec(16, 1, 2, 32))
>>> data = pa.table({"id": ["a", "b", "c"], "prompt": ["1+1=", "2+2=", "3+3="],
...                  "answer": ["2", "4", "6"], "answer_type": ["numeric"] * 3})
>>> run = tempfile.mkdtemp()
>>> settings = RolloutSettings(k=2, max_new_tokens=4, batch_prompts=2)
>>> m = run_rollouts(data, model, tok, run, settings, progress=False)
>>> m["rollout"]["prompts_sampled"], m["rollout"]["responses"], m["rollout"]["batches"]
(3, 6, 2)
>>> run_rollouts(data, model, tok, run, settings, progress=False)["rollout"]["prompts_sampled"]
0
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import xxhash

from curate.errors import DataError
from curate.io import write_json_atomic
from curate.schema import ANSWER_TYPES, sample_ids

ENGINES = ("hf", "vllm")


class RolloutInputError(DataError):
    """The data or the model cannot be sampled: the message names what and where."""


@dataclass
class RolloutSettings:
    """How `run_rollouts` samples.

    >>> RolloutSettings(k=4).k, RolloutSettings().engine
    (4, 'hf')
    """

    k: int = 8
    max_new_tokens: int = 64
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    batch_prompts: int = 16
    engine: str = "hf"
    chat_template: str = "auto"  # auto: the tokenizer's template when it has one | none

    def check(self) -> None:
        """Raise RolloutInputError naming the bad setting."""
        if self.k < 1:
            raise RolloutInputError(f"k must be >= 1, got {self.k}")
        if self.max_new_tokens < 1:
            raise RolloutInputError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature <= 0:
            raise RolloutInputError(f"temperature must be > 0 (sampling), got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise RolloutInputError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.batch_prompts < 1:
            raise RolloutInputError(f"batch_prompts must be >= 1, got {self.batch_prompts}")
        if self.engine not in ENGINES:
            raise RolloutInputError(f"engine must be one of {ENGINES}, got {self.engine!r}")
        if self.chat_template not in ("auto", "none"):
            raise RolloutInputError(f"chat_template must be auto or none, got {self.chat_template!r}")


# ----------------------------------------------------------------------------- input checks


def check_samples(table: pa.Table, where: str = "data", images_ok: bool = False) -> pa.Table:
    """Validate a Sample-schema table for rollouts; returns it with `id` filled.

    Every row needs a prompt and an answer, and an answer type a verifier reads
    (numeric, choice, expression, text, or null to detect it). Rows with images
    need `images_ok` (a vision-language model). Errors name `where`, the row and
    the column.

    >>> check_samples(pa.table({"prompt": ["1+1="], "answer": ["2"]})).column_names
    ['prompt', 'answer', 'id']
    >>> check_samples(pa.table({"prompt": ["1+1=", "x"], "answer": ["2", None]}), "d.jsonl")
    Traceback (most recent call last):
    ...
    trainer.rollout.RolloutInputError: d.jsonl: row 1: column 'answer' is empty; every prompt needs a gold answer to verify
    >>> check_samples(pa.table({"prompt": ["p"], "answer": ["1"], "answer_type": ["code"]}), "d")
    Traceback (most recent call last):
    ...
    trainer.rollout.RolloutInputError: d: row 0: answer_type 'code' has no verifier; expected one of numeric, choice, expression, text (or null to detect it)
    """
    for col in ("prompt", "answer"):
        if col not in table.column_names:
            raise RolloutInputError(f"{where}: no {col!r} column (has {table.column_names}); rollouts "
                                    "need prompts and gold answers to verify against")
        values = table.column(col)
        empty = pc.or_(pc.is_null(values), pc.equal(pc.utf8_trim_whitespace(values.cast(pa.string())), ""))
        bad = pc.indices_nonzero(pc.fill_null(empty, True))
        if len(bad):
            raise RolloutInputError(f"{where}: row {bad[0].as_py()}: column {col!r} is empty; every prompt "
                                    "needs a gold answer to verify" if col == "answer" else
                                    f"{where}: row {bad[0].as_py()}: column {col!r} is empty")
    if "answer_type" in table.column_names:
        types = table.column("answer_type").to_pylist()
        for i, t in enumerate(types):
            if t is not None and t not in ANSWER_TYPES:
                raise RolloutInputError(
                    f"{where}: row {i}: answer_type {t!r} has no verifier; expected one of "
                    f"{', '.join(ANSWER_TYPES)} (or null to detect it)")
    if "id" not in table.column_names or table.column("id").null_count:
        ids = sample_ids(table.column("prompt").to_pylist(), table.column("answer").to_pylist())
        if "id" in table.column_names:
            given = table.column("id").to_pylist()
            ids = [g if g is not None else i for g, i in zip(given, ids, strict=True)]
            table = table.drop_columns(["id"])
        table = table.append_column("id", pa.array(ids, pa.string()))
    if "images" in table.column_names and not images_ok:
        n_img = pc.fill_null(pc.list_value_length(table.column("images")), 0)
        with_images = pc.indices_nonzero(pc.greater(n_img, 0))
        if len(with_images):
            raise RolloutInputError(
                f"{where}: row {with_images[0].as_py()}: has images, but the model is a text-only "
                f"causal LM ({len(with_images)} rows with images): sample them with a "
                "vision-language model (a Qwen2-VL directory, or a config with [data] suite = "
                "\"vision\"), or curate the text-only sources into a set of their own")
    dup = pc.value_counts(table.column("id"))
    many = [d["values"].as_py() for d in dup if d["counts"].as_py() > 1]
    if many:
        raise RolloutInputError(f"{where}: sample id {many[0]!r} appears more than once "
                                f"({len(many)} duplicated ids); deduplicate the data first")
    return table


def logged_ids(run_dir: str | os.PathLike) -> set[str]:
    """Sample ids that already have responses in ``RUN/rollouts``."""
    parts = sorted((Path(run_dir) / "rollouts").glob("part-*.parquet"))
    if not parts:
        return set()
    return set(pq.read_table(parts, columns=["sample_id"]).column("sample_id").to_pylist())


# ----------------------------------------------------------------------------- batching


def plan_batches(lengths: Sequence[int], ids: Sequence[str], batch_prompts: int) -> list[list[int]]:
    """Row indices grouped into batches of similar prompt length (ties by id).

    The plan depends only on the data and `batch_prompts`, so a rerun cuts the
    same batches.

    >>> plan_batches([5, 1, 3, 1], ["a", "b", "c", "d"], 2)
    [[1, 3], [2, 0]]
    """
    order = sorted(range(len(ids)), key=lambda i: (lengths[i], ids[i]))
    return [order[i:i + batch_prompts] for i in range(0, len(order), batch_prompts)]


def batch_seed(seed: int, ids: Sequence[str]) -> int:
    """A torch seed from the run seed and the batch's sample ids.

    >>> batch_seed(0, ["a", "b"]) == batch_seed(0, ["a", "b"]) != batch_seed(1, ["a", "b"])
    True
    """
    return xxhash.xxh3_64_intdigest("\x1f".join([str(seed), *ids]).encode()) & 0x7FFF_FFFF_FFFF_FFFF


def format_prompts(tokenizer, prompts: Sequence[str], chat_template: str = "auto") -> list[str]:
    """The text the model sees: the tokenizer's chat template when it has one
    (and `chat_template` is auto), else the prompt as it is."""
    if chat_template == "none" or not getattr(tokenizer, "chat_template", None):
        return list(prompts)
    return [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                          add_generation_prompt=True) for p in prompts]


# ----------------------------------------------------------------------------- engines


class HFEngine:
    """Batched sampling with transformers `forward` and the trainer's generation code."""

    name = "hf"

    def __init__(self, model, tokenizer, settings: RolloutSettings) -> None:
        self.model, self.tokenizer, self.s = model, tokenizer, settings
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "left"

    def token_lengths(self, texts: Sequence[str]) -> list[int]:
        enc = self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        return [len(x) for x in enc]

    def sample(self, texts: Sequence[str], seed: int, images: Sequence[list] | None = None,
               ids: Sequence[str] | None = None) -> tuple[list[str], list[int]]:
        """k responses per text (prompt-major) and their token counts."""
        import torch

        from trainer.generation import generate_groups

        torch.manual_seed(seed)
        gen = generate_groups(self.model, self.tokenizer, texts, self.s.k, self.s.max_new_tokens,
                              temperature=self.s.temperature, top_p=self.s.top_p)
        return gen.texts, [int(n) for n in gen.response_lengths]


class VisionHFEngine(HFEngine):
    """`HFEngine` for a vision-language model: each prompt with its images in front
    (`trainer.vision.VisionInputs`, images decoded once per sha256), shared-prefill
    group sampling with the vision tokens blocked."""

    name = "hf"

    def __init__(self, model, tokenizer, settings: RolloutSettings) -> None:
        from trainer.vision import VisionInputs

        super().__init__(model, tokenizer, settings)
        self.inputs = VisionInputs(model, tokenizer)

    def token_lengths(self, texts: Sequence[str], images: Sequence[list] | None = None,
                      ids: Sequence[str] | None = None) -> list[int]:
        """Prompt tokens, image tokens included (a bad image is an error naming the sample)."""
        if images is None:
            return super().token_lengths(texts)
        return super().token_lengths(self.inputs.prepare(texts, images, ids)[0])

    def sample(self, texts: Sequence[str], seed: int, images: Sequence[list] | None = None,
               ids: Sequence[str] | None = None) -> tuple[list[str], list[int]]:
        import torch

        from trainer.vision_generation import generate_vision_groups

        torch.manual_seed(seed)
        device = next(self.model.parameters()).device
        batch = self.inputs.encode(texts, images or [[] for _ in texts], ids, device)
        gen = generate_vision_groups(self.model, self.inputs, batch, self.s.k, self.s.max_new_tokens,
                                     temperature=self.s.temperature, top_p=self.s.top_p)
        return gen.texts, [int(n) for n in gen.response_lengths]


class VLLMEngine:
    """vLLM's `LLM.generate` with n = k per prompt (GPU machines); same outputs as HFEngine."""

    name = "vllm"

    def __init__(self, model_path: str, settings: RolloutSettings, dtype: str = "auto") -> None:
        try:
            import vllm
        except ImportError as exc:
            raise RolloutInputError("--engine vllm: vLLM is not installed here (it needs a CUDA GPU "
                                    "machine: pip install vllm); use --engine hf") from exc
        self.s = settings
        self.llm = vllm.LLM(model=model_path, dtype=dtype, seed=settings.seed)
        self.tokenizer = self.llm.get_tokenizer()
        self._vllm = vllm

    def token_lengths(self, texts: Sequence[str]) -> list[int]:
        return [len(self.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]

    def sample(self, texts: Sequence[str], seed: int, images: Sequence[list] | None = None,
               ids: Sequence[str] | None = None) -> tuple[list[str], list[int]]:
        if images and any(images):
            raise RolloutInputError("--engine vllm samples text prompts here; use --engine hf for "
                                    "image prompts")
        params = self._vllm.SamplingParams(n=self.s.k, temperature=self.s.temperature, top_p=self.s.top_p,
                                           max_tokens=self.s.max_new_tokens, seed=seed % (2**31))
        outs = self.llm.generate(list(texts), params, use_tqdm=False)
        responses, lengths = [], []
        for out in outs:
            for c in out.outputs:
                responses.append(c.text)
                lengths.append(len(c.token_ids))
        return responses, lengths


# ----------------------------------------------------------------------------- the run


def _verify(prompts: list[str], responses: list[str], answers: list[str], types: list[str | None]
            ) -> tuple[list[float], list[bool]]:
    from trainer.rewards import format_reward, verifiable_reward

    reward = verifiable_reward(prompts, responses, answer=answers, answer_type=types)
    fmt = format_reward(prompts, responses)
    return reward, [f > 0 for f in fmt]


class _Progress:
    """A rich progress bar (prompts, prompts/s, ETA); silent when disabled."""

    def __init__(self, enabled: bool, total: int, done: int) -> None:
        self.bar = None
        if not enabled:
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(TextColumn("[bold]rollout[/]"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("prompts"), TextColumn("{task.fields[rate]}"),
                            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                            transient=False)
        self.task = self.bar.add_task("rollout", total=total, completed=done, rate="")
        self.bar.start()

    def advance(self, n: int, prompts_per_s: float, tokens_per_s: float) -> None:
        if self.bar is not None:
            self.bar.update(self.task, advance=n,
                            rate=f"{prompts_per_s:.2f} prompts/s {tokens_per_s:,.0f} tok/s")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def run_rollouts(
    samples: pa.Table,
    model,
    tokenizer,
    run_dir: str | os.PathLike,
    settings: RolloutSettings | None = None,
    *,
    engine: Any = None,
    run_id: str | None = None,
    source: dict[str, Any] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Sample `settings.k` responses per prompt of `samples`, verify, log under `run_dir`.

    `model`/`tokenizer`: a transformers causal LM and its tokenizer (ignored when
    `engine` is given, e.g. a `VLLMEngine`). Prompts already in the run's log are
    skipped. Returns the run manifest (also written to ``RUN/manifest.json``).
    """
    from curate.rollout_log import RolloutWriter
    from trainer.vision import is_vision_model

    settings = settings or RolloutSettings()
    settings.check()
    vision = engine is None and is_vision_model(model)
    samples = check_samples(samples, images_ok=vision)
    run = Path(run_dir)
    run_id = run_id or run.name
    manifest_path = run / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    earlier = manifest.get("rollout", {}).get("settings")
    now = asdict(settings)
    if earlier and {k: v for k, v in earlier.items() if k != "engine"} != \
            {k: v for k, v in now.items() if k != "engine"}:
        raise RolloutInputError(f"{run}: this run was sampled with {earlier}; resuming it with "
                                f"different settings {now} would mix two samplings (use a new --out)")
    engine = engine or (VisionHFEngine if vision else HFEngine)(model, tokenizer, settings)
    ids = samples.column("id").to_pylist()
    prompts = samples.column("prompt").to_pylist()
    answers = [str(a) for a in samples.column("answer").to_pylist()]
    types = (samples.column("answer_type").to_pylist() if "answer_type" in samples.column_names
             else [None] * len(ids))
    domains = (samples.column("domain").to_pylist() if "domain" in samples.column_names
               else [None] * len(ids))
    images = ([v or [] for v in samples.column("images").to_pylist()]
              if "images" in samples.column_names else [[] for _ in ids])
    if vision:  # image placeholders go first, then the prompt as it is
        texts = list(prompts)
        lengths = engine.token_lengths(texts, images, ids)
    else:
        texts = format_prompts(getattr(engine, "tokenizer", tokenizer), prompts,
                               settings.chat_template)
        lengths = engine.token_lengths(texts)
    batches = plan_batches(lengths, ids, settings.batch_prompts)
    done = logged_ids(run) & set(ids)
    todo = sum(1 for i in ids if i not in done)

    writer = RolloutWriter(run, run_id=run_id)
    manifest["run_id"] = run_id
    manifest["rollout"] = {"settings": now, "source": source or {}, "prompts": len(ids), "complete": False}
    write_json_atomic(manifest, manifest_path)  # the settings first: a killed run resumes with them
    ui = _Progress(progress, total=len(ids), done=len(done))
    t0 = time.perf_counter()
    n_prompts = n_responses = n_tokens = n_correct = 0
    try:
        for b, rows in enumerate(batches):
            rows = [r for r in rows if ids[r] not in done]
            if not rows:
                continue
            seed = batch_seed(settings.seed, [ids[r] for r in rows])
            if vision:
                responses, rlens = engine.sample([texts[r] for r in rows], seed,
                                                 [images[r] for r in rows], [ids[r] for r in rows])
            else:
                responses, rlens = engine.sample([texts[r] for r in rows], seed)
            k = settings.k
            rep = [r for r in rows for _ in range(k)]
            reward, fmt_ok = _verify([prompts[r] for r in rep], responses, [answers[r] for r in rep],
                                     [types[r] for r in rep])
            table = pa.table({
                "step": pa.array([b] * len(rep), pa.int64()),
                "sample_id": [ids[r] for r in rep],
                "group": pa.array([g for g in range(len(rows)) for _ in range(k)], pa.int64()),
                "response_idx": pa.array(list(range(k)) * len(rows), pa.int64()),
                "domain": pa.array([domains[r] for r in rep], pa.string()),
                "prompt": [prompts[r] for r in rep],
                "response": responses,
                "reward": pa.array(reward, pa.float64()),
                "correct": [x > 0.5 for x in reward],
                "format_ok": fmt_ok,
                "prompt_tokens": pa.array([lengths[r] for r in rep], pa.int64()),
                "response_tokens": pa.array(rlens, pa.int64()),
                "sampler": [f"rollout-{engine.name}"] * len(rep),
                "policy_version": pa.array([0] * len(rep), pa.int64()),
                "images": [images[r] for r in rep],
            })
            existing = len(list(writer.dir.glob(f"part-{b:08d}-*.parquet")))
            writer.write(table, seq=existing)
            n_prompts += len(rows)
            n_responses += len(rep)
            n_tokens += sum(rlens)
            n_correct += sum(1 for x in reward if x > 0.5)
            dt = max(time.perf_counter() - t0, 1e-9)
            ui.advance(len(rows), n_prompts / dt, n_tokens / dt)
    finally:
        ui.close()
    seconds = time.perf_counter() - t0
    total_done = len(logged_ids(run) & set(ids))
    manifest["rollout"] = {
        "settings": now,
        "source": source or {},
        "prompts": len(ids),
        "prompts_done": total_done,
        "prompts_skipped_already_logged": len(done),
        "prompts_to_sample": todo,
        "prompts_sampled": n_prompts,
        "responses": n_responses,
        "generated_tokens": n_tokens,
        "correct": n_correct,
        "batches": len(batches),
        "seconds": round(seconds, 3),
        "prompts_per_s": round(n_prompts / seconds, 3) if n_prompts else None,
        "tokens_per_s": round(n_tokens / seconds, 1) if n_prompts else None,
        "complete": total_done == len(ids),
    }
    write_json_atomic(manifest, manifest_path)
    return manifest
