"""Thresher's sampler inside verl's PPO/GRPO trainer.

verl 0.4-0.7 (tested against the real 0.7.1: `make test-verl`) builds the train sampler
from the config: `create_rl_sampler(data_config, dataset)` loads
`data.sampler.class_path` / `class_name`, calls `cls(data_source=dataset,
data_config=data_config)`, and after every step calls `sampler.update(batch)`
when the sampler is an `AbstractCurriculumSampler`.  `ThresherCurriculumSampler`
is one; settings go under `data.sampler` too:

    data.sampler.class_path=pkg://trainer.plugins.verl
    data.sampler.class_name=ThresherCurriculumSampler
    +data.sampler.name=thompson          # any sampling.make_sampler name
    +data.sampler.group_size=8           # = actor_rollout_ref.rollout.n
    +data.sampler.seed=0
    +data.sampler.stats=RUN/stats/stats-00000100.parquet   # optional: resume a store
    +data.sampler.run_dir=RUN            # optional: rollout log + stats snapshots
    data.dataloader_num_workers=0        # verl requires it for curriculum samplers

The stable id of a row is `extra_info.index` (verl's data preprocessing
scripts write it), read as a string, or `extra_info[data.sampler.id_key]`.

verl 0.8.0 removed `data.sampler.class_path`; there (tested against 0.9.1), build the sampler in code
and pass it as `RayPPOTrainer(..., train_sampler=sampler)`, and call
`sampler.update(batch)` from the dataset's `on_batch_end(batch)` hook, which
the trainer calls after every step (see docs/plugins.md).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sized
from typing import Any

import numpy as np
import torch

try:  # the real base class where verl has it, so verl's isinstance checks pass
    from verl.experimental.dataset.sampler import AbstractCurriculumSampler as _Base
except Exception:  # verl absent, or a version without the interface
    _Base = torch.utils.data.Sampler

from trainer.plugins._common import dataset_positions

_DEFAULTS = {"name": "thompson", "group_size": 8, "seed": 0, "stats": None, "run_dir": None,
             "id_key": "index", "run_id": "verl"}


def _get(cfg: Any, key: str, default: Any = None) -> Any:
    if cfg is None:
        return default
    getter = getattr(cfg, "get", None)
    return getter(key, default) if getter is not None else getattr(cfg, key, default)


def _extra_info_ids(extra_info: Any, id_key: str, where: str) -> list[str]:
    ids = []
    for i, info in enumerate(extra_info):
        value = info.get(id_key) if isinstance(info, Mapping) else None
        if value is None:
            raise ValueError(f"{where}: row {i} has no extra_info.{id_key}; verl's stable id is "
                             f"extra_info.{id_key} (set data.sampler.id_key to use another key)")
        ids.append(str(value))
    return ids


def _dataset_ids(dataset: Any, id_key: str) -> list[str]:
    """The stable id of every dataset row, without tokenizing the rows."""
    frame = getattr(dataset, "dataframe", None)  # verl's RLHFDataset keeps an HF Dataset here
    if frame is not None and "extra_info" in getattr(frame, "column_names", ()):
        return _extra_info_ids(frame["extra_info"], id_key, "train dataset")
    return _extra_info_ids((dataset[i].get("extra_info") for i in range(len(dataset))),
                           id_key, "train dataset")


class ThresherCurriculumSampler(_Base):
    """A verl curriculum sampler: each batch is `next_batch(train_batch_size, step)`.

    `data_source` is verl's dataset (rows carry `extra_info`); `data_config` is
    verl's `data` config (an OmegaConf node, or any mapping).  Positions are
    yielded one batch at a time, so with `dataloader_num_workers=0` each draw
    sees every update made so far.

    >>> rows = [{"extra_info": {"index": i}} for i in range(4)]
    >>> s = ThresherCurriculumSampler(rows, {"train_batch_size": 2, "sampler": {"name": "uniform"}})
    >>> len(s), sorted(list(s))
    (4, [0, 1, 2, 3])
    """

    def __init__(self, data_source: Sized, data_config: Any) -> None:
        import pyarrow as pa

        from sampling import SampleStats, make_sampler

        scfg = _get(data_config, "sampler")
        opt = {k: _get(scfg, k, v) for k, v in _DEFAULTS.items()}
        self.batch_size = int(_get(data_config, "gen_batch_size", None)
                              or _get(data_config, "train_batch_size"))
        self.id_key = str(opt["id_key"])
        ids = _dataset_ids(data_source, self.id_key)
        if opt["stats"]:
            stats = SampleStats.load(opt["stats"])
        else:
            stats = SampleStats.from_samples(pa.table({"id": ids}))
        self.stats = stats
        self.sampler = make_sampler(str(opt["name"]), stats, group_size=int(opt["group_size"]),
                                    seed=int(opt["seed"]))
        self.position = dataset_positions(stats.ids, ids)
        self.num_batches = max(1, len(ids) // self.batch_size)
        self.step = 1  # the step the next drawn batch is for
        self.updates = 0
        self.run_dir = opt["run_dir"]
        self.writer = None
        if self.run_dir:
            from curate.rollout_log import RolloutWriter

            self.writer = RolloutWriter(self.run_dir, str(opt["run_id"]))
        self.pending: list[dict[str, Any]] = []

    def __len__(self) -> int:
        return self.num_batches * self.batch_size

    def __iter__(self) -> Iterator[int]:
        for _ in range(self.num_batches):
            rows = self.sampler.next_rows(self.batch_size, step=self.step)
            self.pending.append({"step": self.step, "sample_id": self.stats.ids[rows].tolist()})
            self.step += 1
            yield from self.position[rows].tolist()

    def update(self, batch: Any) -> None:
        """Fold one trained batch in: one entry per response (the sum of its
        `token_level_scores`), keyed by `extra_info.index`."""
        ids = _extra_info_ids(batch.non_tensor_batch["extra_info"], self.id_key, "batch")
        scores = batch.batch["token_level_scores"]
        rewards = scores.sum(dim=-1).float().cpu().numpy().astype(np.float64)
        sel = self.pending.pop(0) if self.pending else None
        step = sel["step"] if sel else self.step - 1
        lengths = None
        if "response_mask" in batch.batch.keys():
            lengths = batch.batch["response_mask"].sum(dim=-1).cpu().numpy()
        self.stats.update(ids, rewards, step=step, lengths=lengths)
        self.updates += 1
        if self.writer is not None:
            self._log(batch, ids, rewards, step, lengths)

    def _log(self, batch: Any, ids: list[str], rewards: np.ndarray, step: int,
             lengths: Any) -> None:
        n = len(ids)
        nt = batch.non_tensor_batch
        uid = nt.get("uid") if hasattr(nt, "get") else None
        # Responses of one prompt share a uid; number the groups and the responses within them.
        keys = np.asarray(uid if uid is not None else ids).astype(str)
        _, group = np.unique(keys, return_inverse=True)
        order = np.argsort(group, kind="stable")
        response_idx = np.empty(n, np.int64)
        starts = np.r_[0, np.flatnonzero(np.diff(group[order])) + 1]
        response_idx[order] = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))
        text = nt.get("raw_prompt") if hasattr(nt, "get") else None
        self.writer.write({
            "step": [step] * n, "sample_id": ids, "group": group.tolist(),
            "response_idx": response_idx.tolist(),
            "prompt": [str(t) for t in text] if text is not None else [""] * n,
            "response": [""] * n, "reward": rewards.tolist(),
            "response_tokens": lengths.tolist() if lengths is not None else [None] * n,
            "sampler": [self.sampler.name] * n, "policy_version": [step] * n,
        })
        self.stats.save(self.run_dir, sampler=self.sampler)


def attach_to_dataset(dataset: Any, sampler: ThresherCurriculumSampler) -> Any:
    """The route for verl >= 0.8 (tested against 0.9.1's trainer code), which dropped
    `data.sampler.class_path`: after every step its trainer calls
    `train_dataset.on_batch_end(batch=batch)` when the dataset has it.  This sets
    that hook to `sampler.update` (keeping any hook already there) and returns
    the dataset; pass the sampler as `RayPPOTrainer(..., train_sampler=sampler)`.

    >>> rows = [{"extra_info": {"index": i}} for i in range(2)]
    >>> class Rows(list): pass
    >>> ds = attach_to_dataset(Rows(rows), ThresherCurriculumSampler(rows, {"train_batch_size": 1}))
    >>> callable(ds.on_batch_end)
    True
    """
    previous = getattr(dataset, "on_batch_end", None)

    def on_batch_end(batch: Any) -> None:
        if previous is not None:
            previous(batch=batch)
        sampler.update(batch=batch)

    dataset.on_batch_end = on_batch_end
    return dataset
