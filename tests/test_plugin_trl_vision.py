"""ThresherGRPOTrainer with a vision-language model: a real trl.GRPOTrainer on a tiny
Qwen2-VL built from a config, image prompts in TRL's conversational format, on CPU."""

from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("WANDB_DISABLED", "true")
trl = pytest.importorskip("trl")
datasets = pytest.importorskip("datasets")

from PIL import Image  # noqa: E402

from curate.synthetic_vision import make_vision_suite  # noqa: E402
from sampling import SampleStats, ThompsonSampler  # noqa: E402
from trainer.plugins.trl import make_trainer_class  # noqa: E402
from trainer.vision import TinyVLMSpec, build_tiny_vlm, trl_processor, vision_tokenizer  # noqa: E402

G, B, STEPS = 4, 2, 3


def _parity(completions, **_):
    """Varies within a group for a random model, so the updates carry gradient."""
    return [float(sum(map(ord, str(c))) % 2) for c in completions]


def test_trl_grpo_trains_a_vlm_with_the_thresher_sampler(tmp_path):
    table = make_vision_suite(6, tmp_path / "images", domains=("majority",), seed=0, max_level=1)
    ids, refs = table["id"].to_pylist(), table["images"].to_pylist()
    train = datasets.Dataset.from_dict({
        "prompt": [[{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": p}]}]
                   for p in table["prompt"].to_pylist()],
        "image": [Image.open(r[0]["path"]).convert("RGB") for r in refs],
        "sample_id": ids, "image_refs": refs,
    })
    tok = vision_tokenizer()
    model = build_tiny_vlm(tok, TinyVLMSpec(hidden_size=32, num_layers=1, num_heads=2,
                                            intermediate_size=64, vision_dim=16))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    args = trl.GRPOConfig(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=B * G, num_generations=G,
        max_completion_length=4, max_steps=STEPS, learning_rate=1e-3, logging_steps=100,
        save_strategy="no", report_to=[], use_cpu=True, seed=0, bf16=False,
        dataloader_num_workers=0)
    sampler = ThompsonSampler(SampleStats.from_samples(pa.table({"id": ids})), group_size=G, seed=0)
    trainer = make_trainer_class()(
        model=model, reward_funcs=_parity, args=args, train_dataset=train,
        processing_class=trl_processor(model, tok), sampler=sampler, run_dir=tmp_path / "run",
        run_id="trl-vlm", image_refs_column="image_refs")
    trainer.train()

    changed = {n for n, p in model.named_parameters() if not torch.equal(before[n], p)}
    assert any(n.startswith("model.visual.") for n in changed)  # TRL trained the tower too
    assert trainer.thresher_updates == STEPS
    log = pq.read_table(tmp_path / "run" / "rollouts").to_pylist()
    assert len(log) == STEPS * B * G
    by_id = dict(zip(ids, refs, strict=True))
    for row in log:  # every completion carries its prompt's image reference, never pixels
        assert row["images"] == by_id[row["sample_id"]]
