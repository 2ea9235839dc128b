"""Held-out evaluation: greedy decoding, verifiable correctness, one row per problem."""

from __future__ import annotations

import contextlib

import pyarrow as pa
import torch

from trainer.generation import generate
from trainer.rewards import verifiable_reward

EVAL_SCHEMA = pa.schema([("step", pa.int64()), ("phase", pa.string()), ("mode", pa.string()),
                         ("domain", pa.string()), ("sample_id", pa.string()),
                         ("sample_idx", pa.int64()), ("correct", pa.bool_()),
                         ("response", pa.string())])


def evaluate(model, tokenizer, samples: pa.Table, max_new_tokens: int = 16, step: int = 0,
             phase: str = "", batch_size: int = 256, k: int = 1, temperature: float = 0.0,
             seed: int = 0) -> pa.Table:
    """Answer every prompt of `samples`; `correct` via `verifiable_reward`.

    `temperature == 0`: one greedy response per prompt (mode "greedy").
    Otherwise `k` sampled responses per prompt at `temperature` (mode
    "sampled"): the mean of `correct` is then pass@1 estimated from k samples,
    the protocol of DeepSeek-R1's reports. Returns a table with EVAL_SCHEMA
    (the job writes it to RUN/eval/*.parquet).

    >>> from trainer.modeling import TinyModelSpec, build_tiny_model, char_tokenizer
    >>> tok = char_tokenizer()
    >>> spec = TinyModelSpec(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32)
    >>> model = build_tiny_model(tok, spec)
    >>> samples = pa.table({"id": ["a", "b"], "prompt": ["add:1+2=", "max:3,1="],
    ...                     "answer": ["3", "3"], "domain": ["add", "max"]})
    >>> table = evaluate(model, tok, samples, max_new_tokens=2, step=10, phase="sft")
    >>> table.schema == EVAL_SCHEMA, table["mode"].to_pylist(), table["step"].to_pylist()
    (True, ['greedy', 'greedy'], [10, 10])
    >>> table = evaluate(model, tok, samples, max_new_tokens=2, k=3, temperature=1.0)
    >>> table["mode"][0].as_py(), table["sample_id"].to_pylist(), table["sample_idx"].to_pylist()
    ('sampled', ['a', 'a', 'a', 'b', 'b', 'b'], [0, 1, 2, 0, 1, 2])
    """
    greedy = temperature <= 0
    k = 1 if greedy else k
    if not greedy:
        samples = samples.take([i for i in range(samples.num_rows) for _ in range(k)])
        torch.manual_seed(seed)
    prompts = samples.column("prompt").to_pylist()
    device = next(model.parameters()).device
    ctx = (torch.autocast("cuda", dtype=torch.bfloat16)
           if device.type == "cuda" and torch.cuda.is_bf16_supported() else contextlib.nullcontext())
    with ctx:
        gen = generate(model, tokenizer, prompts, max_new_tokens, do_sample=not greedy,
                       temperature=temperature if not greedy else 1.0, batch_size=batch_size)
    types = (samples.column("answer_type").to_pylist() if "answer_type" in samples.column_names
             else ["text"] * len(prompts))
    ok = verifiable_reward(prompts, gen.texts, answer=samples.column("answer").to_pylist(),
                           answer_type=types)
    n = len(prompts)
    return pa.table({
        "step": [step] * n, "phase": [phase] * n, "mode": ["greedy" if greedy else "sampled"] * n,
        "domain": samples.column("domain").to_pylist(), "sample_id": samples.column("id").to_pylist(),
        "sample_idx": [i % k for i in range(n)],
        "correct": [v >= 0.5 for v in ok], "response": gen.texts,
    }, schema=EVAL_SCHEMA)


def accuracy(table: pa.Table) -> float:
    """Mean of `correct` over an evaluation table."""
    col = table.column("correct").to_pylist()
    return sum(col) / max(1, len(col))


def accuracy_by_domain(table: pa.Table) -> dict[str, float]:
    import polars as pl

    df = pl.from_arrow(table).group_by("domain").agg(pl.col("correct").mean()).sort("domain")
    return dict(zip(df["domain"].to_list(), df["correct"].to_list(), strict=True))


@torch.no_grad()
def pass_at_1(model, tokenizer, samples: pa.Table, k: int = 16, max_new_tokens: int = 16,
              temperature: float = 1.0, seed: int = 0, prompts_per_batch: int = 64
              ) -> tuple[float, float]:
    """Held-out pass@1 from k samples per prompt at `temperature`, and its standard error.

    Each prompt is prefilled once and its k responses share the cache
    (`generate_groups`), so k = 16 costs little more than k = 4. The standard
    error is over prompts: std of the per-prompt means / sqrt(prompts), the
    precision with which two checkpoints (or two runs) can be ranked.

    >>> from trainer.modeling import TinyModelSpec, build_tiny_model, char_tokenizer
    >>> tok = char_tokenizer()
    >>> tok.padding_side = "left"
    >>> model = build_tiny_model(tok, TinyModelSpec(hidden_size=16, num_layers=1, num_heads=2,
    ...                                             intermediate_size=32))
    >>> samples = pa.table({"id": ["a", "b"], "prompt": ["add:1+2=", "max:3,1="],
    ...                     "answer": ["3", "3"]})
    >>> mean, se = pass_at_1(model, tok, samples, k=4, max_new_tokens=2)
    >>> 0.0 <= mean <= 1.0 and se >= 0.0
    True
    """
    import numpy as np

    from trainer.generation import generate_groups

    prompts = samples.column("prompt").to_pylist()
    answers = samples.column("answer").to_pylist()
    types = (samples.column("answer_type").to_pylist() if "answer_type" in samples.column_names
             else ["text"] * len(prompts))
    torch.manual_seed(seed)
    per_prompt = []
    for s in range(0, len(prompts), prompts_per_batch):
        chunk = prompts[s:s + prompts_per_batch]
        gen = generate_groups(model, tokenizer, chunk, k, max_new_tokens, temperature)
        ok = verifiable_reward([p for p in chunk for _ in range(k)], gen.texts,
                               answer=[a for a in answers[s:s + prompts_per_batch] for _ in range(k)],
                               answer_type=[t for t in types[s:s + prompts_per_batch] for _ in range(k)])
        per_prompt.extend(np.asarray(ok, dtype=float).reshape(len(chunk), k).mean(axis=1).tolist())
    arr = np.asarray(per_prompt)
    se = float(arr.std(ddof=1) / np.sqrt(len(arr))) if len(arr) > 1 else 0.0
    return float(arr.mean()), se
