"""Thresher's sampler as a verl curriculum sampler, driven the way verl's trainer drives it.

In verl 0.4-0.7 you only add config overrides (see docs/plugins.md):

    data.sampler.class_path=pkg://trainer.plugins.verl
    data.sampler.class_name=ThresherCurriculumSampler
    +data.sampler.name=thompson +data.sampler.group_size=8 +data.sampler.run_dir=RUN
    data.dataloader_num_workers=0

This script needs no verl: it builds the sampler exactly as verl's
`create_rl_sampler` does (`cls(data_source=dataset, data_config=config.data)`),
iterates it through a DataLoader and calls `sampler.update(batch)` with a batch
carrying `extra_info.index` and token-level scores, with simulated rewards
(prompt i is solved with probability i / n).

    .venv/bin/python examples/verl_sampler.py --run-dir runs/verl-demo --steps 20
"""

from __future__ import annotations

import argparse
from types import SimpleNamespace

import numpy as np
import torch
from torch.utils.data import DataLoader

from trainer.plugins.verl import ThresherCurriculumSampler


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", default="runs/verl-demo")
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()
    n, batch_size, rollouts, resp_len = 32, 4, 8, 6
    # verl's RLHFDataset rows carry extra_info.index, the stable id.
    dataset = [{"extra_info": {"index": i}, "raw_prompt": f"prompt {i}"} for i in range(n)]
    data_config = {"train_batch_size": batch_size, "dataloader_num_workers": 0,
                   "sampler": {"name": "thompson", "group_size": rollouts, "seed": 0,
                               "run_dir": args.run_dir}}
    sampler = ThresherCurriculumSampler(data_source=dataset, data_config=data_config)
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=True,
                        collate_fn=lambda rows: rows)
    rng = np.random.default_rng(0)
    step = 0
    while step < args.steps:
        for rows in loader:
            step += 1
            infos = np.repeat(np.array([r["extra_info"] for r in rows], dtype=object), rollouts)
            p = np.array([info["index"] / n for info in infos])
            scores = torch.zeros(len(infos), resp_len)
            scores[:, -1] = torch.from_numpy((rng.random(len(p)) < p).astype(np.float32))
            sampler.update(SimpleNamespace(
                batch={"token_level_scores": scores},
                non_tensor_batch={"extra_info": infos,
                                  "uid": np.repeat(np.arange(batch_size), rollouts).astype(str)}))
            if step == args.steps:
                break
    t = sampler.stats.to_arrow().to_pydict()
    picks = {int(s): k // rollouts for s, k in zip(t["sample_id"], t["n_seen"], strict=True)}
    print(f"{sampler.updates} updates; picks of the 8 easiest prompts: "
          f"{sum(picks[i] for i in range(n - 8, n))}, of the 8 in the middle: "
          f"{sum(picks[i] for i in range(12, 20))}; rollouts -> {args.run_dir}/rollouts/")


if __name__ == "__main__":
    main()
