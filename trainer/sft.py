"""Supervised fine-tuning for the cold start: loss on response tokens only.

Rows are (prompt, response) pairs from curation (the Sample schema's
`prompt` and `solution` columns by default). Each example is
``prompt + response + EOS``; prompt tokens get label -100, so only the
response is learned. Batches are right padded (examples sorted into
length buckets) or packed into rows of `max_length` tokens.

Image prompts: with a vision-language model (`trainer.vision`), a row's
`images` go in front of its prompt as placeholders, each distinct image of a
batch goes through the vision tower once, and the loss is still on the
response only. Text-only rows train in the same batches. Image rows are not
packed (each would need its own rope index); a prompt longer than
`max_length` is an error (truncating it would cut an image).

Example (seconds on CPU)::

    sft = SFTTrainer(model, tok, table, SFTConfig(epochs=2), out_dir="runs/demo/sft")
    sft.train(); sft.save()
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from trainer import checkpoint as ckpt
from trainer.config import SFTConfig
from trainer.modeling import auto_device
from trainer.schedule import make_scheduler
from trainer.vision import VisionInputs, is_vision_model, vision_logits

IGNORE = -100


@dataclass
class SFTMetrics:
    step: int
    loss: float
    lr: float
    tokens_per_s: float


def tokenize_pairs(
    tokenizer, prompts: Sequence[str], responses: Sequence[str], max_length: int
) -> list[tuple[list[int], list[int]]]:
    """(input_ids, labels) per example; prompt tokens masked, EOS appended, truncated."""
    p_ids = tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
    r_ids = tokenizer(list(responses), add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    out = []
    for p, r in zip(p_ids, r_ids, strict=True):
        ids = (p + r + [eos])[:max_length]
        labels = ([IGNORE] * len(p) + r + [eos])[:max_length]
        out.append((ids, labels))
    return out


def pad_batch(examples: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(ids) for ids, _ in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, (x, y) in enumerate(examples):
        ids[i, : len(x)] = torch.tensor(x)
        labels[i, : len(y)] = torch.tensor(y)
        mask[i, : len(x)] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask,
            "position_ids": (mask.cumsum(1) - 1).clamp(min=0)}


def pack_examples(examples: list[tuple[list[int], list[int]]], max_length: int, pad_id: int
                  ) -> list[dict[str, torch.Tensor]]:
    """Greedy first-fit packing into rows of `max_length`; position ids restart per example.

    Attention is causal over the whole row (as TRL's plain packing); with an
    attention implementation that reads `position_ids` boundaries
    (flash-attention 2) examples do not see each other.
    """
    rows: list[list[tuple[list[int], list[int]]]] = []
    room: list[int] = []
    for ex in sorted(examples, key=lambda e: -len(e[0])):
        for i, r in enumerate(room):
            if len(ex[0]) <= r:
                rows[i].append(ex)
                room[i] -= len(ex[0])
                break
        else:
            rows.append([ex])
            room.append(max_length - len(ex[0]))
    packed = []
    for row in rows:
        ids = [t for x, _ in row for t in x]
        labels = [t for _, y in row for t in y]
        pos = [p for x, _ in row for p in range(len(x))]
        packed.append({"ids": ids, "labels": labels, "pos": pos})
    return packed


class SFTTrainer:
    """Cold-start supervised fine-tuning of a causal LM on (prompt, response) rows.

    >>> import tempfile
    >>> from trainer.modeling import TinyModelSpec, build_tiny_model, char_tokenizer
    >>> tok = char_tokenizer()
    >>> spec = TinyModelSpec(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32)
    >>> rows = pa.table({"prompt": ["add:1+2=", "add:2+2=", "max:3,1=", "max:0,4="],
    ...                  "solution": ["\\\\boxed{3}", "\\\\boxed{4}", "\\\\boxed{3}", None]})
    >>> cfg = SFTConfig(batch_size=2, device="cpu")
    >>> sft = SFTTrainer(build_tiny_model(tok, spec), tok, rows, cfg, out_dir=tempfile.mkdtemp())
    >>> len(sft.examples), sft.total_steps  # the row without a response is dropped
    (3, 2)
    >>> [(m.step, round(m.lr, 6)) for m in sft.train()]  # cosine schedule down to 0
    [(1, 0.0005), (2, 0.0)]
    >>> sft.save().name
    'final'
    """

    def __init__(
        self, model, tokenizer, data: pa.Table, config: SFTConfig, out_dir: str | os.PathLike,
        prompt_column: str = "prompt", response_column: str = "solution", progress: bool = False,
        images_column: str = "images",
    ) -> None:
        for c in (prompt_column, response_column):
            if c not in data.column_names:
                raise ValueError(f"SFT data lacks column {c!r}; expected (prompt, response) rows")
        prompts = data.column(prompt_column).to_pylist()
        responses = data.column(response_column).to_pylist()
        keep = [i for i, r in enumerate(responses) if r]  # rows without a response teach nothing
        if not keep:
            raise ValueError(f"SFT data has no non-empty {response_column!r} values")
        self.cfg = config
        self.out_dir = Path(out_dir)
        self.tokenizer = tokenizer
        self.device, self.dtype = auto_device(config.device)
        self.model = model.to(self.device)
        self.progress = progress
        prompts, responses = [prompts[i] for i in keep], [responses[i] for i in keep]
        images = data.column(images_column).to_pylist() if images_column in data.column_names \
            else [None] * data.num_rows
        self.images: list[list[dict]] = [images[i] or [] for i in keep]
        self.vision = VisionInputs(model, tokenizer) if is_vision_model(model) else None
        if any(self.images):
            prompts = self._image_prompts(prompts, data, keep)
        self.examples = tokenize_pairs(tokenizer, prompts, responses, config.max_length)
        n_batches = -(-len(self._units()) // config.batch_size)
        per_epoch = max(1, n_batches // config.grad_accum)
        self.total_steps = config.max_steps or max(1, int(round(per_epoch * config.epochs)))
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=config.lr,
                                           weight_decay=config.weight_decay)
        self.scheduler = make_scheduler(self.optimizer, config.lr_schedule, config.warmup_steps,
                                        self.total_steps)
        self.history: list[SFTMetrics] = []

    def _image_prompts(self, prompts: list[str], data: pa.Table, keep: list[int]) -> list[str]:
        """Prompts with their image placeholders in front (images decoded once, checked)."""
        ids = data.column("id").to_pylist() if "id" in data.column_names else list(range(data.num_rows))
        ids = [str(ids[i]) for i in keep]
        if self.vision is None:
            row = next(i for i, v in enumerate(self.images) if v)
            raise ValueError(f"SFT data: row {keep[row]} (id {ids[row]!r}) has images but the model is "
                             "a text-only LM; train a vision-language model (trainer.vision)")
        if self.cfg.packing:
            raise ValueError("SFT packing is for text rows; image rows need one rope index each "
                             "(set packing = false)")
        texts = self.vision.prepare(prompts, self.images, ids)[0]
        lengths = [len(t) for t in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]
        long = [i for i, n in enumerate(lengths) if n >= self.cfg.max_length]
        if long:
            raise ValueError(f"SFT data: {len(long)} image prompts have at least max_length = "
                             f"{self.cfg.max_length} tokens (first: id {ids[long[0]]!r}, "
                             f"{lengths[long[0]]} tokens); raise max_length")
        return texts

    def _units(self) -> list:
        if self.cfg.packing:
            return pack_examples(self.examples, self.cfg.max_length, self.tokenizer.pad_token_id)
        return self.examples

    def _batches(self, rng: random.Random):
        """Endless shuffled batches (length-bucketed when padding, to waste few pads)."""
        units = self._units()
        bs = self.cfg.batch_size
        while True:
            order = list(range(len(units)))
            rng.shuffle(order)
            if not self.cfg.packing:  # sort within windows of 50 batches by length
                win = bs * 50
                order = [i for s in range(0, len(order), win)
                         for i in sorted(order[s:s + win], key=lambda i: len(units[i][0]))]
            chunks = [order[s:s + bs] for s in range(0, len(order), bs)]
            rng.shuffle(chunks)
            for c in chunks:
                yield self._collate([units[i] for i in c], c)

    def _collate(self, units: list, idx: list[int]) -> dict[str, Any]:
        pad = self.tokenizer.pad_token_id
        if not self.cfg.packing:
            batch: dict[str, Any] = pad_batch(units, pad)
            refs = [self.images[i] for i in idx]
            if any(refs):  # the batch's distinct images, once each (decoded from the cache)
                batch["images"] = self.vision.prepare([""] * len(idx), refs)[3]
            return batch
        width = max(len(u["ids"]) for u in units)
        out = {k: torch.full((len(units), width), v, dtype=torch.long)
               for k, v in (("input_ids", pad), ("labels", IGNORE), ("attention_mask", 0),
                            ("position_ids", 0))}
        for i, u in enumerate(units):
            n = len(u["ids"])
            out["input_ids"][i, :n] = torch.tensor(u["ids"])
            out["labels"][i, :n] = torch.tensor(u["labels"])
            out["attention_mask"][i, :n] = 1
            out["position_ids"][i, :n] = torch.tensor(u["pos"])
        return out

    def _autocast(self):
        if self.device.type == "cuda" and self.dtype != torch.float32:
            return torch.autocast("cuda", dtype=self.dtype)
        return contextlib.nullcontext()

    def train(self) -> list[SFTMetrics]:
        """Run `total_steps` optimizer steps (each `grad_accum` micro-batches)."""
        cfg = self.cfg
        rng = random.Random(cfg.seed)
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed)
        batches = self._batches(rng)
        self.model.train()
        bar = _bar(self.total_steps, self.progress)
        with bar or contextlib.nullcontext():
            task = bar.add_task("SFT", total=self.total_steps, info="") if bar else None
            for step in range(1, self.total_steps + 1):
                t0 = time.perf_counter()
                self.optimizer.zero_grad(set_to_none=True)
                total_loss, tokens = 0.0, 0
                micro = [next(batches) for _ in range(cfg.grad_accum)]
                n_label = sum(int((b["labels"][:, 1:] != IGNORE).sum()) for b in micro)
                for b in micro:
                    b = {k: v.to(self.device) for k, v in b.items()}
                    with self._autocast():
                        if "images" in b:  # right padded: rope positions from the mask
                            logits = vision_logits(self.model, b["input_ids"], b["attention_mask"],
                                                   b["images"])
                        else:
                            logits = self.model(input_ids=b["input_ids"],
                                                attention_mask=b["attention_mask"],
                                                position_ids=b["position_ids"], use_cache=False).logits
                    # token-level mean over the whole accumulated batch
                    loss = torch.nn.functional.cross_entropy(
                        logits[:, :-1].float().reshape(-1, logits.shape[-1]),
                        b["labels"][:, 1:].reshape(-1), ignore_index=IGNORE, reduction="sum",
                    ) / max(1, n_label)
                    loss.backward()
                    total_loss += float(loss.detach())
                    tokens += int(b["attention_mask"].sum())
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
                self.optimizer.step()
                self.scheduler.step()
                m = SFTMetrics(step, total_loss, self.scheduler.get_last_lr()[0],
                               tokens / max(1e-9, time.perf_counter() - t0))
                self.history.append(m)
                if bar:
                    bar.update(task, completed=step, info=f"loss {m.loss:.3f}  {m.tokens_per_s:,.0f} tok/s")
                if cfg.save_every and step % cfg.save_every == 0 and step < self.total_steps:
                    self.save(step)
        self.model.eval()
        return self.history

    def save(self, step: int | None = None) -> Path:
        """Save model + tokenizer: `out_dir/final` (or a step checkpoint), atomically."""
        if step is None:
            final = self.out_dir / "final"
            tmp = self.out_dir / ".final.tmp"
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
            self.model.save_pretrained(tmp)
            self.tokenizer.save_pretrained(tmp)
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            return final
        state = {"step": step, "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "rng": ckpt.rng_state(),
                 "config": self.cfg.to_dict()}
        return ckpt.save_checkpoint(self.out_dir, step, self.model, self.tokenizer, state, keep=2)


def _bar(total: int, enabled: bool):
    if not enabled:
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("SFT "), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[info]}"), TimeElapsedColumn())


def cold_start(build: Callable[[], tuple[Any, Any]], sft_set: pa.Table, config: SFTConfig,
               out_dir: str | os.PathLike, *, progress: bool = False, reuse: bool = True,
               device: str | None = None, on_build: Callable[[Any], None] | None = None
               ) -> tuple[Any, Any, Path]:
    """The cold start: SFT a model from `build()` on `sft_set`, saved as `out_dir/final`.

    With `reuse` and a model already in `out_dir/final` (a resumed job), that one is
    loaded instead (on `device` when given) and nothing is trained. `on_build(model)`
    runs on a freshly built model before training (e.g. to print its size).
    Returns (model, tokenizer, path of the saved model).

    >>> import tempfile
    >>> from trainer.modeling import TinyModelSpec, build_tiny_model, char_tokenizer
    >>> tok = char_tokenizer()
    >>> spec = TinyModelSpec(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32)
    >>> rows = pa.table({"prompt": ["add:1+2="], "solution": ["\\\\boxed{3}"]})
    >>> out = tempfile.mkdtemp()
    >>> _, _, path = cold_start(lambda: (build_tiny_model(tok, spec), tok), rows,
    ...                         SFTConfig(max_steps=1, device="cpu"), out)
    >>> path.name, cold_start(lambda: 1 / 0, rows, SFTConfig(), out)[2] == path  # reused
    ('final', True)
    """
    final = Path(out_dir) / "final"
    if reuse and (final / "config.json").exists():
        from trainer.modeling import auto_device, load_pretrained

        model, tok = load_pretrained(final, auto_device(device)[0]) if device else load_pretrained(final)
        return model, tok, final
    model, tok = build()
    if on_build is not None:
        on_build(model)
    sft = SFTTrainer(model, tok, sft_set, config, out_dir, progress=progress)
    sft.train()
    return sft.model, tok, sft.save()
