"""Thresher against the real verl (run by `make test-verl` in .venv-verl-<version>).

raw files -> thresher curate -> thresher rollout -> difficulty band -> thresher
export --format verl, then verl's own RLHFDataset reads the file, verl's own
dataloader construction takes Thresher's sampler (0.7.1: `create_rl_sampler`
with `data.sampler.class_path`; 0.9.1: `RayPPOTrainer._create_dataloader` with
`train_sampler=`), and batches built the way verl's trainer builds them
(`DataProto.from_single_dict`, a uid per prompt, `repeat(n, interleave=True)`,
token-level scores) are fed back through verl's update hook.
"""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest

verl = pytest.importorskip("verl")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the shared helpers
os.environ["HF_HUB_OFFLINE"] = "1"

from importlib.metadata import version  # noqa: E402

from omegaconf import OmegaConf  # noqa: E402
from rollout_helpers import band_pipeline  # noqa: E402

VERL = tuple(int(x) for x in version("verl").split(".")[:2])
N = 4  # actor_rollout_ref.rollout.n


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, Path]:
    return band_pipeline(tmp_path_factory.mktemp("verl"))


def _tokenizer(model_dir: Path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    # the char tokenizer has no chat template; verl applies one to measure prompt lengths
    tok.chat_template = ("{% for m in messages %}{{ m['content'] }}{% endfor %}"
                         "{% if add_generation_prompt %}\n{% endif %}")
    return tok


def _data_config(files: list[str], with_class_path: bool) -> OmegaConf:
    sampler = {"name": "thompson", "group_size": N, "seed": 0}
    if with_class_path:
        sampler.update(class_path="pkg://trainer.plugins.verl", class_name="ThresherCurriculumSampler")
    return OmegaConf.create({
        "train_files": files, "val_files": files, "prompt_key": "prompt", "max_prompt_length": 512,
        "filter_overlong_prompts": True, "truncation": "error", "return_raw_chat": True,
        "train_batch_size": 2, "gen_batch_size": None, "val_batch_size": None,
        "dataloader_num_workers": 0, "shuffle": False, "seed": 0, "validation_shuffle": False,
        "sampler": sampler, "cache_dir": "/tmp/verl-cache", "filter_overlong_prompts_workers": 1,
    })


def _dataset(exported, tok, cfg):
    from verl.utils.dataset.rl_dataset import RLHFDataset

    return RLHFDataset(data_files=[str(exported["verl"] / "train.parquet")], tokenizer=tok, config=cfg)


def test_rlhf_dataset_reads_the_export(exported):
    import pyarrow.parquet as pq

    tok = _tokenizer(exported["model"])
    cfg = _data_config([str(exported["verl"] / "train.parquet")], with_class_path=False)
    ds = _dataset(exported, tok, cfg)
    band = pq.read_table(sorted(exported["band"].glob("part-*.parquet"))).to_pydict()
    assert len(ds) == len(band["id"]) > 0
    row = ds[0]
    assert row["index"] in set(band["id"])  # extra_info.index is the stable sample id
    assert row["data_source"] == "gsm8k" and row["reward_model"]["style"] == "rule"
    assert row["reward_model"]["ground_truth"] in {"3", "7"}
    if "raw_prompt" in row:
        assert row["raw_prompt"][0]["role"] == "user"


def _loader(exported, tok):
    """verl's own dataloader construction with Thresher's sampler, per verl version."""
    from trainer.plugins.verl import ThresherCurriculumSampler, attach_to_dataset

    files = [str(exported["verl"] / "train.parquet")]
    if VERL < (0, 8):  # data.sampler.class_path, verl's create_rl_sampler
        try:
            from verl.trainer.main_ppo import create_rl_sampler
        except ImportError:
            from verl.trainer.ppo.utils import create_rl_sampler
        from torchdata.stateful_dataloader import StatefulDataLoader
        from verl.utils.dataset.rl_dataset import collate_fn

        cfg = _data_config(files, with_class_path=True)
        ds = _dataset(exported, tok, cfg)
        sampler = create_rl_sampler(cfg, ds)
        assert isinstance(sampler, ThresherCurriculumSampler)
        from verl.experimental.dataset.sampler import AbstractCurriculumSampler

        assert isinstance(sampler, AbstractCurriculumSampler)  # so verl's trainer calls update()
        loader = StatefulDataLoader(dataset=ds, batch_size=cfg.train_batch_size, num_workers=0,
                                    drop_last=True, collate_fn=collate_fn, sampler=sampler)
        return ds, sampler, loader, lambda batch: sampler.update(batch=batch)
    # verl >= 0.8: RayPPOTrainer(train_sampler=...), on_batch_end after every step
    from verl.trainer.ppo.ray_trainer import RayPPOTrainer

    cfg = _data_config(files, with_class_path=False)
    ds = _dataset(exported, tok, cfg)
    sampler = ThresherCurriculumSampler(data_source=ds, data_config=cfg)
    ds = attach_to_dataset(ds, sampler)
    fake = types.SimpleNamespace(config=OmegaConf.create({
        "data": cfg, "trainer": {"total_epochs": 1, "total_training_steps": None}}),
        tokenizer=tok, processor=None)
    RayPPOTrainer._create_dataloader(fake, ds, ds, None, sampler)  # the trainer's own code
    assert fake.train_dataloader.sampler is sampler
    return ds, sampler, fake.train_dataloader, lambda batch: fake.train_dataset.on_batch_end(batch=batch)


def test_verl_dataloader_drives_thresher_sampler(exported):
    import torch
    from verl import DataProto

    tok = _tokenizer(exported["model"])
    ds, sampler, loader, end_of_step = _loader(exported, tok)
    ids_in_data = {ds.dataframe[i]["extra_info"]["index"] for i in range(len(ds))}
    steps = 0
    for _ in range(3):  # epochs
        for batch_dict in loader:
            batch = DataProto.from_single_dict(batch_dict)
            batch.non_tensor_batch["uid"] = np.array([f"u{steps}-{i}" for i in range(len(batch))],
                                                     dtype=object)
            batch = batch.repeat(repeat_times=N, interleave=True)
            ids = [info["index"] for info in batch.non_tensor_batch["extra_info"]]
            assert set(ids) <= ids_in_data
            scores = torch.zeros(len(batch), 4)
            scores[:, -1] = torch.tensor([float(i % 2) for i in range(len(batch))])
            batch.batch["token_level_scores"] = scores
            batch.batch["response_mask"] = torch.ones(len(batch), 4, dtype=torch.long)
            end_of_step(batch)
            steps += 1
    assert steps == 3 * (len(ds) // 2) and sampler.updates == steps
    seen = dict(zip(sampler.stats.ids.tolist(), sampler.stats.to_arrow().column("n_seen").to_pylist(),
                    strict=True))
    assert sum(seen.values()) == steps * 2 * N
    assert set(seen) == ids_in_data
