"""ThresherCurriculumSampler driven the way verl's trainer drives a curriculum sampler.

verl itself (ray, tensordict, omegaconf, vllm...) is too heavy to install here;
when it is importable, the sampler subclasses its real AbstractCurriculumSampler.
This test reproduces the calls of verl 0.5.0: `create_rl_sampler` (load the
class from data.sampler.class_path/class_name, construct it with
data_source=dataset and data_config=config.data, check it is a sampler), the
StatefulDataLoader over it (batch_size=train_batch_size, drop_last, 0 workers),
`batch.repeat(n, interleave=True)` for the rollouts, the token-level scores with
the reward on the last response token, and `sampler.update(batch=batch)`.
"""

from __future__ import annotations

import importlib
from types import SimpleNamespace

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from torch.utils.data import DataLoader

datasets = pytest.importorskip("datasets")

N_PROMPTS, BATCH, N_ROLLOUT, RESP_LEN, STEPS = 12, 3, 4, 5, 40


class Cfg(dict):
    """Attribute + .get access, like an OmegaConf DictConfig."""

    def __getattr__(self, key):
        return self[key]


class FakeRLHFDataset(torch.utils.data.Dataset):
    """Like verl's RLHFDataset: an HF Dataset in .dataframe, rows with extra_info."""

    def __init__(self):
        self.dataframe = datasets.Dataset.from_dict({
            "prompt": [f"q{i}" for i in range(N_PROMPTS)],
            "extra_info": [{"index": 100 + i, "split": "train"} for i in range(N_PROMPTS)],
        })

    def __len__(self):
        return len(self.dataframe)

    def __getitem__(self, i):
        row = self.dataframe[i]
        return {"raw_prompt": row["prompt"], "extra_info": row["extra_info"],
                "input_ids": torch.zeros(2, dtype=torch.long)}


def collate_fn(rows):  # verl.utils.dataset.rl_dataset.collate_fn, reduced
    return {"non_tensor": {k: np.array([r[k] for r in rows], dtype=object)
                           for k in ("raw_prompt", "extra_info")}}


def create_rl_sampler(data_config, dataset):  # verl 0.5.0 trainer/main_ppo.py, reproduced
    path = data_config.sampler["class_path"].removeprefix("pkg://")
    cls = getattr(importlib.import_module(path), data_config.sampler["class_name"])
    sampler = cls(data_source=dataset, data_config=data_config)
    assert isinstance(sampler, torch.utils.data.Sampler)
    assert data_config.get("dataloader_num_workers", 8) == 0
    return sampler


def reward(index: int, k: int) -> float:
    # Prompt index 100 is always solved; every other prompt by half its rollouts.
    return 1.0 if index == 100 else float(k % 2)


def test_sampler_driven_like_verl(tmp_path):
    data_cfg = Cfg(train_batch_size=BATCH, dataloader_num_workers=0, shuffle=True, sampler=Cfg(
        class_path="pkg://trainer.plugins.verl", class_name="ThresherCurriculumSampler",
        name="thompson", group_size=N_ROLLOUT, seed=0, run_dir=str(tmp_path / "run")))
    dataset = FakeRLHFDataset()
    sampler = create_rl_sampler(data_cfg, dataset)
    loader = DataLoader(dataset, batch_size=BATCH, sampler=sampler, drop_last=True,
                        num_workers=0, collate_fn=collate_fn)
    picked: list[list[int]] = []
    step = 0
    while step < STEPS:
        for raw in loader:  # the trainer's epoch loop
            step += 1
            infos = np.repeat(raw["non_tensor"]["extra_info"], N_ROLLOUT)  # repeat(interleave=True)
            idx = [int(info["index"]) for info in infos]
            picked.append(sorted(set(idx)))
            scores = torch.zeros(len(idx), RESP_LEN)
            scores[:, -1] = torch.tensor([reward(i, k % N_ROLLOUT) for k, i in enumerate(idx)])
            batch = SimpleNamespace(
                batch={"token_level_scores": scores,
                       "response_mask": torch.ones(len(idx), RESP_LEN, dtype=torch.long)},
                non_tensor_batch={"extra_info": infos,
                                  "uid": np.repeat(np.arange(BATCH), N_ROLLOUT).astype(str),
                                  "raw_prompt": np.repeat(raw["non_tensor"]["raw_prompt"], N_ROLLOUT)})
            sampler.update(batch=batch)
            if step == STEPS:
                break

    assert sampler.updates == STEPS
    table = sampler.stats.to_arrow().to_pydict()
    seen = dict(zip(table["sample_id"], table["n_seen"], strict=True))
    assert sum(seen.values()) == STEPS * BATCH * N_ROLLOUT  # one update per response
    flat = [i for step_ids in picked for i in step_ids]
    for sid, n in seen.items():  # ...keyed by extra_info.index
        assert n == flat.count(int(sid)) * N_ROLLOUT
    assert all(len(p) == BATCH for p in picked)  # distinct prompts within a batch
    # The always-solved prompt is dropped once its rewards are known.
    # Uniform picks would give it STEPS * BATCH / N_PROMPTS = 10 batches, half of them late.
    easy = [t for t, p in enumerate(picked, start=1) if 100 in p]
    late = [t for t in easy if t > STEPS // 2]
    assert easy and len(easy) <= 5 and len(late) <= 2, easy

    parts = sorted((tmp_path / "run" / "rollouts").glob("*.parquet"))
    assert len(parts) == STEPS
    log = pq.read_table(parts).to_pydict()
    assert len(log["reward"]) == STEPS * BATCH * N_ROLLOUT
    assert sorted(set(log["response_idx"])) == list(range(N_ROLLOUT))
    assert list((tmp_path / "run" / "stats").glob("stats-*.parquet"))


def test_missing_extra_info_index_is_a_clear_error():
    from trainer.plugins.verl import ThresherCurriculumSampler

    rows = [{"extra_info": {"index": 0}}, {"extra_info": {}}]
    with pytest.raises(ValueError, match=r"row 1 has no extra_info.index"):
        ThresherCurriculumSampler(rows, {"train_batch_size": 1})


def test_batch_end_route_for_newer_verl():
    # verl 0.9.1 ray_trainer: `if hasattr(self.train_dataset, "on_batch_end"):
    #     self.train_dataset.on_batch_end(batch=batch)` after every step.
    from trainer.plugins.verl import ThresherCurriculumSampler, attach_to_dataset

    dataset = FakeRLHFDataset()
    sampler = ThresherCurriculumSampler(data_source=dataset, data_config=Cfg(train_batch_size=2))
    attach_to_dataset(dataset, sampler)
    rows = next(iter(DataLoader(dataset, batch_size=2, sampler=sampler, collate_fn=collate_fn)))
    infos = np.repeat(rows["non_tensor"]["extra_info"], 2)
    batch = SimpleNamespace(batch={"token_level_scores": torch.ones(4, 3)},
                            non_tensor_batch={"extra_info": infos})
    assert hasattr(dataset, "on_batch_end")
    with pytest.raises(ValueError, match="reward"):  # 3.0 per response is outside [0, 1]
        dataset.on_batch_end(batch=batch)
    batch.batch["token_level_scores"] = torch.tensor([[0, 0, 1.0]] * 4)
    dataset.on_batch_end(batch=batch)
    seen = dict(zip(*sampler.stats.to_arrow().select(["sample_id", "n_seen"]).to_pydict().values(),
                    strict=True))
    assert {k: v for k, v in seen.items() if v} == {str(i["index"]): 2 for i in infos[::2]}
