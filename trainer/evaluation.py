"""Held-out evaluation: greedy decoding, verifiable correctness, one row per problem.

Image prompts (a vision-language model and a `samples` table with `images`)
take the same path through `trainer.vision_generation`; `blank_images` gives
the control set where every image is replaced by a black one of the same size,
so an evaluation can say how much of its accuracy needs the image.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np
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
    device = next(model.parameters()).device
    ctx = (torch.autocast("cuda", dtype=torch.bfloat16)
           if device.type == "cuda" and torch.cuda.is_bf16_supported() else contextlib.nullcontext())
    from trainer.vision import is_vision_model

    if is_vision_model(model):
        torch.manual_seed(seed)
        with ctx:
            texts = _vision_texts(model, tokenizer, samples, k, max_new_tokens, greedy,
                                  temperature, batch_size)
        samples = samples.take([i for i in range(samples.num_rows) for _ in range(k)])
    else:
        if not greedy:
            samples = samples.take([i for i in range(samples.num_rows) for _ in range(k)])
            torch.manual_seed(seed)
        with ctx:
            texts = generate(model, tokenizer, samples.column("prompt").to_pylist(), max_new_tokens,
                             do_sample=not greedy, temperature=temperature if not greedy else 1.0,
                             batch_size=batch_size).texts
    prompts = samples.column("prompt").to_pylist()
    types = (samples.column("answer_type").to_pylist() if "answer_type" in samples.column_names
             else ["text"] * len(prompts))
    ok = verifiable_reward(prompts, texts, answer=samples.column("answer").to_pylist(),
                           answer_type=types)
    n = len(prompts)
    return pa.table({
        "step": [step] * n, "phase": [phase] * n, "mode": ["greedy" if greedy else "sampled"] * n,
        "domain": samples.column("domain").to_pylist(), "sample_id": samples.column("id").to_pylist(),
        "sample_idx": [i % k for i in range(n)],
        "correct": [v >= 0.5 for v in ok], "response": texts,
    }, schema=EVAL_SCHEMA)


@torch.no_grad()
def _vision_texts(model, tokenizer, samples: pa.Table, k: int, max_new_tokens: int, greedy: bool,
                  temperature: float, batch_size: int) -> list[str]:
    """k responses per row (prompt-major) of a vision-language model; images with each prompt.

    Each prompt is prefilled once and its k responses share the cache. A
    missing or unreadable image is an `ImageError` naming the sample and the
    path: an evaluation set is scored whole or not at all.
    """
    from trainer.vision import VisionInputs
    from trainer.vision_generation import generate_vision_groups

    tokenizer.padding_side = "left"
    inputs = VisionInputs(model, tokenizer)
    prompts = samples.column("prompt").to_pylist()
    images = samples.column("images").to_pylist() if "images" in samples.column_names \
        else [None] * len(prompts)
    ids = samples.column("id").to_pylist() if "id" in samples.column_names else None
    device = next(model.parameters()).device
    per_batch = max(1, batch_size // k)
    texts: list[str] = []
    for s in range(0, len(prompts), per_batch):
        batch = inputs.encode(prompts[s:s + per_batch], images[s:s + per_batch],
                              ids[s:s + per_batch] if ids else None, device)
        gen = generate_vision_groups(model, inputs, batch, k, max_new_tokens,
                                     temperature if not greedy else 1.0, do_sample=not greedy)
        texts += gen.texts
    return texts


def blank_images(samples: pa.Table, image_dir: str | os.PathLike) -> pa.Table:
    """`samples` with every image replaced by a black image of the same size (the control
    evaluation: what a model answers when the image carries nothing).

    One PNG per size is written under `image_dir` (named by its sha256); rows
    without images are unchanged.

    >>> import tempfile
    >>> from curate.synthetic_vision import make_vision_suite
    >>> t = make_vision_suite(4, tempfile.mkdtemp(), domains=("bars",), max_level=1)
    >>> blank = blank_images(t, tempfile.mkdtemp())
    >>> len({r[0]["sha256"] for r in blank["images"].to_pylist()}), blank["prompt"] == t["prompt"]
    (1, True)
    """
    from PIL import Image

    from curate.synthetic_vision import write_images

    if "images" not in samples.column_names:
        return samples
    by_size: dict[tuple[int, int], dict[str, str]] = {}
    rows = []
    for refs in samples.column("images").to_pylist():
        out = []
        for ref in refs or []:
            with Image.open(ref["path"]) as im:
                w, h = im.size
            if (w, h) not in by_size:
                by_size[(w, h)] = write_images([np.zeros((h, w, 3), np.uint8)], Path(image_dir))[0]
            out.append(by_size[(w, h)])
        rows.append(out)
    col = samples.schema.get_field_index("images")
    return samples.set_column(col, samples.schema.field(col),
                              pa.array(rows, samples.schema.field(col).type))


def accuracy(table: pa.Table) -> float:
    """Mean of `correct` over an evaluation table."""
    col = table.column("correct").to_pylist()
    return sum(col) / max(1, len(col))


def accuracy_by_domain(table: pa.Table) -> dict[str, float]:
    import polars as pl

    df = pl.from_arrow(table).group_by("domain").agg(pl.col("correct").mean()).sort("domain")
    return dict(zip(df["domain"].to_list(), df["correct"].to_list(), strict=True))


@torch.no_grad()
def pass_rates(model, tokenizer, samples: pa.Table, k: int = 16, max_new_tokens: int = 16,
               temperature: float = 1.0, seed: int = 0, prompts_per_batch: int = 64
               ) -> np.ndarray:
    """Each prompt's pass rate: the share of k samples at `temperature` that are correct.

    Each prompt is prefilled once and its k responses share the cache
    (`generate_groups`), so k = 16 costs little more than k = 4.

    >>> from trainer.modeling import TinyModelSpec, build_tiny_model, char_tokenizer
    >>> tok = char_tokenizer()
    >>> tok.padding_side = "left"
    >>> model = build_tiny_model(tok, TinyModelSpec(hidden_size=16, num_layers=1, num_heads=2,
    ...                                             intermediate_size=32))
    >>> samples = pa.table({"id": ["a", "b"], "prompt": ["add:1+2=", "max:3,1="],
    ...                     "answer": ["3", "3"]})
    >>> rates = pass_rates(model, tok, samples, k=4, max_new_tokens=2)
    >>> rates.shape, bool(((rates >= 0) & (rates <= 1)).all())
    ((2,), True)
    """
    from trainer.generation import generate_groups

    prompts = samples.column("prompt").to_pylist()
    answers = samples.column("answer").to_pylist()
    types = (samples.column("answer_type").to_pylist() if "answer_type" in samples.column_names
             else ["text"] * len(prompts))
    torch.manual_seed(seed)
    per_prompt: list[float] = []
    for s in range(0, len(prompts), prompts_per_batch):
        chunk = prompts[s:s + prompts_per_batch]
        gen = generate_groups(model, tokenizer, chunk, k, max_new_tokens, temperature)
        ok = verifiable_reward([p for p in chunk for _ in range(k)], gen.texts,
                               answer=[a for a in answers[s:s + prompts_per_batch] for _ in range(k)],
                               answer_type=[t for t in types[s:s + prompts_per_batch] for _ in range(k)])
        per_prompt.extend(np.asarray(ok, dtype=float).reshape(len(chunk), k).mean(axis=1).tolist())
    return np.asarray(per_prompt)


def pass_at_1(model, tokenizer, samples: pa.Table, k: int = 16, max_new_tokens: int = 16,
              temperature: float = 1.0, seed: int = 0, prompts_per_batch: int = 64
              ) -> tuple[float, float]:
    """Held-out pass@1 from k samples per prompt at `temperature`, and its standard error.

    The mean of `pass_rates`. The standard error is over prompts: std of the
    per-prompt means / sqrt(prompts), the precision with which two
    checkpoints (or two runs) can be ranked.

    >>> from trainer.modeling import TinyModelSpec, build_tiny_model, char_tokenizer
    >>> tok = char_tokenizer()  # one prompt: no padding side to choose
    >>> model = build_tiny_model(tok, TinyModelSpec(16, 1, 2, 32))
    >>> one = pa.table({"prompt": ["add:1+2="], "answer": ["3"]})
    >>> mean, se = pass_at_1(model, tok, one, k=4, max_new_tokens=2)
    >>> mean == float(pass_rates(model, tok, one, k=4, max_new_tokens=2)[0]), se
    (True, 0.0)
    """
    arr = pass_rates(model, tokenizer, samples, k, max_new_tokens, temperature, seed,
                     prompts_per_batch)
    se = float(arr.std(ddof=1) / np.sqrt(len(arr))) if len(arr) > 1 else 0.0
    return float(arr.mean()), se
