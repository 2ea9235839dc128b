"""Thresher inside `trl.GRPOTrainer`: our sampler picks the prompts, the gathered
rewards update `SampleStats`, and every completion lands in our rollout log.

TRL has no public hook for either, so this subclass overrides two methods whose
shape has been stable across TRL 0.2x-1.x (tested: TRL 1.16.0):

- `_get_train_sampler` returns `ThresherRepeatSampler`, which keeps TRL's
  `RepeatSampler` layout: each generation batch holds B distinct prompt indices
  (B = generation_batch_size // num_generations), each index repeated
  `num_generations` times in a row, and the whole chunk repeated
  `num_iterations * steps_per_generation` times.  Every process computes the
  same stream, because every process holds an identical store (below).
- `_calculate_rewards` returns TRL's rewards gathered across processes; we
  gather the `sample_id` column the same way and apply `stats.update` with the
  weighted reward of every completion, once per generation batch, identically
  on every process (so the stores never diverge).  Only the main process
  writes the rollout log.

The one-batch lag: accelerate's dataloader fetches the next batch before the
current one is returned, so the sampler is asked for generation batch t+1
before the rewards of batch t exist.  Selections are therefore queued with the
step they were drawn for, and each reward update pops the oldest pending
selection, checks that its sample ids are the ones that were generated, and
labels the update with that step.  The draw for step t+1 sees the rewards up
to step t-1 (for Thompson sampling, a posterior one step stale).

Checkpoints: every TRL checkpoint folder also gets `thresher_stats.parquet`
(the store with the sampler's state, written atomically) and
`thresher_state.json` (the first step whose rewards are not in the store).
`train(resume_from_checkpoint=...)` restores both before training resumes and
turns off the trainer's replay of already-seen batches (`ignore_data_skip`):
an adaptive sampler cannot be fast-forwarded by re-drawing batches, so it
continues from its saved state instead.  The batch prefetched before the
checkpoint is drawn again, so a resumed run is a faithful continuation but
not bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import collections
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from curate.io import write_json_atomic
from curate.rollout_log import RolloutWriter
from trainer.plugins._common import dataset_positions

STATS_FILE = "thresher_stats.parquet"
STATE_FILE = "thresher_state.json"


class ThresherRepeatSampler:
    """A torch sampler of dataset indices in TRL's repeat layout, chosen by a Thresher sampler.

    `dataset_ids` are the dataset's sample ids in dataset order; the store may
    list them in any order.  `num_batches` generation batches make one pass
    (`len`); iterating again continues the step count.

    >>> import pyarrow as pa
    >>> from sampling import SampleStats, UniformSampler
    >>> stats = SampleStats.from_samples(pa.table({"id": ["a", "b", "c"]}))
    >>> s = ThresherRepeatSampler(UniformSampler(stats, seed=0), ["c", "b", "a"],
    ...                           mini_repeat_count=2, batch_size=1, repeat_count=2, num_batches=1)
    >>> idx = list(s); len(idx), len(set(idx)), len(s)
    (4, 1, 4)
    """

    def __init__(self, sampler: Any, dataset_ids: Any, mini_repeat_count: int, batch_size: int,
                 repeat_count: int = 1, num_batches: int | None = None, start_step: int = 1) -> None:
        self.sampler = sampler
        # store row -> dataset index
        self.position = dataset_positions(sampler.stats.ids, dataset_ids)
        self.mini_repeat_count = int(mini_repeat_count)
        self.batch_size = int(batch_size)
        self.repeat_count = int(repeat_count)
        self.num_batches = int(num_batches or max(1, math.ceil(len(self.position) / self.batch_size)))
        self.step = int(start_step)
        # (step, sample ids, p_estimate, score) of batches handed out but not yet rewarded.
        self.pending: collections.deque[dict[str, Any]] = collections.deque()

    def __len__(self) -> int:
        return self.num_batches * self.batch_size * self.mini_repeat_count * self.repeat_count

    def __iter__(self) -> Iterator[int]:
        for _ in range(self.num_batches):
            rows = self.sampler.next_rows(self.batch_size, step=self.step)
            sel = getattr(self.sampler, "last_selection", None) or {}
            self.pending.append({
                "step": self.step,
                "sample_id": self.sampler.stats.ids[rows].tolist(),
                "p_estimate": np.asarray(sel.get("p_estimate", np.full(len(rows), np.nan))),
                "score": np.asarray(sel.get("score", np.full(len(rows), np.nan))),
            })
            self.step += 1
            idx = np.repeat(self.position[rows], self.mini_repeat_count)
            for _ in range(self.repeat_count):
                yield from idx.tolist()


def _trl_base() -> type:
    import trl  # imported lazily: `import trainer` never needs TRL

    return trl.GRPOTrainer


def _text(x: Any) -> str:
    """A prompt or completion as text (conversational messages are joined)."""
    if isinstance(x, str):
        return x
    if isinstance(x, list):
        return "\n".join(str(m.get("content", "")) if isinstance(m, dict) else str(m) for m in x)
    return str(x)


class _ThresherMixin:
    """Methods shared by every `ThresherGRPOTrainer` (see `make_trainer_class`)."""

    def _thresher_init(self, sampler: Any, run_dir: Any, run_id: str, id_column: str,
                       domain_column: str | None, image_refs_column: str | None = None) -> None:
        self.thresher_sampler = sampler
        self.thresher_image_refs_column = image_refs_column
        self.thresher_stats = sampler.stats
        self.thresher_id_column = id_column
        self.thresher_domain_column = domain_column
        self.rollout_writer = RolloutWriter(run_dir, run_id) if run_dir is not None else None
        self._thresher_repeat: ThresherRepeatSampler | None = None
        self._thresher_start_step = 1
        self.thresher_updates = 0

    def _get_train_sampler(self, dataset: Any = None) -> ThresherRepeatSampler:
        dataset = self.train_dataset if dataset is None else dataset
        if self.thresher_id_column not in dataset.column_names:
            raise ValueError(f"train_dataset has no {self.thresher_id_column!r} column "
                             f"(columns: {dataset.column_names}); add the sample id of every row")
        # Kept across calls so a new epoch continues the step count and the pending queue.
        if self._thresher_repeat is None:
            self._thresher_repeat = ThresherRepeatSampler(
                self.thresher_sampler, dataset[self.thresher_id_column],
                mini_repeat_count=self.num_generations,
                batch_size=self.args.generation_batch_size // self.num_generations,
                repeat_count=self.num_iterations * self.args.steps_per_generation,
                start_step=self._thresher_start_step,
            )
        return self._thresher_repeat

    def _save_checkpoint(self, model: Any, trial: Any, *args: Any, **kwargs: Any) -> None:
        super()._save_checkpoint(model, trial, *args, **kwargs)
        if not self.args.should_save:
            return
        folder = Path(self._get_output_dir(trial=trial)) / f"checkpoint-{self.state.global_step}"
        pending = self._thresher_repeat.pending if self._thresher_repeat is not None else ()
        # the oldest draw not yet rewarded is where a resumed run picks up again
        next_step = pending[0]["step"] if pending else int(self.state.global_step) + 1
        self.thresher_stats.save(folder / STATS_FILE, sampler=self.thresher_sampler)
        write_json_atomic({"next_step": int(next_step), "updates": self.thresher_updates},
                          folder / STATE_FILE)

    def train(self, resume_from_checkpoint: Any = None, *args: Any, **kwargs: Any) -> Any:
        folder = resume_from_checkpoint
        if folder is True:
            from transformers.trainer_utils import get_last_checkpoint

            folder = get_last_checkpoint(self.args.output_dir)
        if folder and (Path(folder) / STATS_FILE).exists():
            self._thresher_restore(Path(folder))
        return super().train(resume_from_checkpoint, *args, **kwargs)

    def _thresher_restore(self, folder: Path) -> None:
        from sampling import SampleStats

        self.thresher_stats.restore(folder / STATS_FILE)  # in place: the sampler holds this store
        state = SampleStats.load_sampler_state(folder / STATS_FILE)
        if state is not None:
            self.thresher_sampler.load_state_dict(state)
        meta = json.loads((folder / STATE_FILE).read_text())
        self._thresher_start_step = int(meta["next_step"])
        self._thresher_repeat = None
        # replaying the skipped batches would make the sampler draw them again
        self.args.ignore_data_skip = True

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        if self.model.training and self._thresher_repeat is not None:
            self._thresher_record(rewards_per_func, inputs, prompts, completions, completion_ids_list)
        return rewards_per_func

    def _thresher_record(self, rewards_per_func, inputs, prompts, completions, completion_ids_list) -> None:
        from accelerate.utils import gather_object

        weights = self.reward_weights.to(rewards_per_func.device).unsqueeze(0)
        rewards = (rewards_per_func * weights).nansum(dim=1).float().cpu().numpy().astype(np.float64)
        # Collectives: every process must call them, in the same order.
        ids = [str(x) for x in gather_object([ex[self.thresher_id_column] for ex in inputs])]
        lengths = gather_object([len(c) for c in completion_ids_list])
        texts = [_text(c) for c in gather_object(list(completions))]
        prompt_texts = [_text(p) for p in gather_object(list(prompts))]
        domains = (gather_object([ex.get(self.thresher_domain_column) for ex in inputs])
                   if self.thresher_domain_column else [None] * len(ids))
        # image prompts: the references (path + sha256) the log keeps, never TRL's pixels
        col = self.thresher_image_refs_column
        images = (gather_object([list(ex.get(col) or []) for ex in inputs]) if col
                  else [[] for _ in ids])
        pending = self._thresher_repeat.pending
        sel = pending.popleft() if pending else None
        if sel is not None and set(sel["sample_id"]) != set(ids):
            raise RuntimeError(f"rewarded sample ids {sorted(set(ids))[:4]} do not match the batch "
                               f"drawn for step {sel['step']} ({sorted(sel['sample_id'])[:4]}); "
                               "was the train sampler replaced?")
        step = sel["step"] if sel is not None else int(self.state.global_step)
        self.thresher_stats.update(ids, rewards, step=step, lengths=lengths, responses=texts)
        self.thresher_updates += 1
        if self.rollout_writer is None or not self.accelerator.is_main_process:
            return
        g = self.num_generations
        n = len(ids)
        p_est = score = np.full(n, np.nan)
        if sel is not None:
            where = {s: i for i, s in enumerate(sel["sample_id"])}
            at = np.array([where[s] for s in ids])
            p_est, score = sel["p_estimate"][at], sel["score"][at]
        self.rollout_writer.write({
            "step": [step] * n, "sample_id": ids,
            "group": (np.arange(n) // g).tolist(), "response_idx": (np.arange(n) % g).tolist(),
            "domain": domains, "prompt": prompt_texts, "response": texts,
            "reward": rewards.tolist(),
            "response_tokens": lengths, "sampler": [self.thresher_sampler.name] * n,
            "p_estimate": p_est.tolist(), "score": score.tolist(),
            "policy_version": [int(self.state.global_step)] * n,
            "images": [[{"path": r.get("path"), "sha256": r.get("sha256")} for r in refs]
                       for refs in images],
        }, seq=0)


_CLASS: type | None = None


def make_trainer_class() -> type:
    """`ThresherGRPOTrainer`: `trl.GRPOTrainer` plus the Thresher sampler, store and log."""
    global _CLASS
    if _CLASS is None:
        base = _trl_base()

        class ThresherGRPOTrainer(_ThresherMixin, base):
            """`trl.GRPOTrainer(..., sampler=..., run_dir=...)`: Thresher picks the prompts.

            Extra keyword arguments: `sampler` (any `sampling` sampler; its store must hold
            the dataset's sample ids), `run_dir` (rollout parts go to RUN/rollouts/; None
            = no log), `run_id`, `id_column` (default "sample_id"), `domain_column`,
            `image_refs_column` (a column of [{path, sha256}] the log keeps beside TRL's
            `image` / `images` pixels; with a vision-language model pass
            `processing_class=trainer.vision.trl_processor(model, tok)`).
            """

            def __init__(self, *args: Any, sampler: Any, run_dir: Any = None, run_id: str = "trl",
                         id_column: str = "sample_id", domain_column: str | None = None,
                         image_refs_column: str | None = None, **kwargs: Any) -> None:
                self._thresher_init(sampler, run_dir, run_id, id_column, domain_column,
                                    image_refs_column)
                super().__init__(*args, **kwargs)

        _CLASS = ThresherGRPOTrainer
    return _CLASS


def __getattr__(name: str) -> Any:
    if name == "ThresherGRPOTrainer":
        return make_trainer_class()
    raise AttributeError(name)
