"""Image prompts from a real multimodal set (the shipped MATH-V testmini subset) through
`thresher rollout` and the multimodal trainer, with a tiny Qwen2-VL built from a config."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from vision_helpers import TINY_VLM_MODEL

from curate import read_samples
from pipelines.cli import main
from trainer import GRPOConfig, GRPOTrainer, combine
from trainer.evaluation import evaluate
from trainer.vision import TinyVLMSpec, build_tiny_vlm, vision_tokenizer

ROOT = Path(__file__).resolve().parents[1]
TINY_VLM = """
[data]
suite = "vision"

""" + TINY_VLM_MODEL


@pytest.fixture
def mathv(monkeypatch):
    """The first MATH-V testmini rows as Samples (image paths relative to the repository)."""
    monkeypatch.chdir(ROOT)
    return read_samples("examples/data/mathv/testmini.jsonl", preset="mathv").samples.slice(0, 3)


def test_thresher_rollout_samples_mathv_with_a_vlm(mathv, tmp_path, capsys):
    data, cfg, out = tmp_path / "mathv.parquet", tmp_path / "vlm.toml", tmp_path / "run"
    pq.write_table(mathv, data)
    cfg.write_text(TINY_VLM)
    args = ["rollout", str(data), "--model", str(cfg), "--k", "2", "--max-new-tokens", "3",
            "--out", str(out), "--no-progress"]
    assert main(args) == 0
    log = pq.read_table(out / "rollouts").to_pylist()
    assert len(log) == 3 * 2
    refs = dict(zip(mathv["id"].to_pylist(), mathv["images"].to_pylist(), strict=True))
    for row in log:  # every response carries its prompt's image reference; its tokens count
        assert row["images"] == refs[row["sample_id"]] and row["prompt_tokens"] > 100
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["rollout"]["source"]["model_info"]["kind"] == "tiny-vlm-from-config"
    assert main(args) == 0  # resumed: nothing sampled again
    assert pq.read_table(out / "rollouts").num_rows == len(log)
    # a text-only model refuses the image rows, naming the row
    capsys.readouterr()
    assert main(["rollout", str(data), "--model", str(ROOT / "examples" / "quickstart.toml"),
                 "--out", str(tmp_path / "text"), "--no-progress"]) == 2
    assert "row 0: has images, but the model is a text-only" in capsys.readouterr().err


def test_the_multimodal_trainer_reads_mathv(mathv, tmp_path):
    tok = vision_tokenizer()
    model = build_tiny_vlm(tok, TinyVLMSpec(hidden_size=32, num_layers=1, num_heads=2,
                                            intermediate_size=64, vision_dim=16))
    before = [p.detach().clone() for p in model.parameters()]
    parity = combine({"parity": (lambda prompts, completions, **_:
                                 [float(sum(map(ord, c)) % 2) for c in completions], 1.0)})
    cfg = GRPOConfig(steps=1, prompts_per_step=3, group_size=2, max_new_tokens=3, lr=1e-2,
                     device="cpu")
    trainer = GRPOTrainer(model, tok, mathv, cfg, tmp_path / "run", reward=parity)
    m = trainer.train()[-1]
    assert not trainer.image_errors and m.extra["rollouts"] == 6
    if m.informative_ratio > 0:
        assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    log = pq.read_table(tmp_path / "run" / "rollouts").to_pylist()
    assert {r["images"][0]["path"] for r in log} == {r[0]["path"] for r in mathv["images"].to_pylist()}
    ev = evaluate(model, tok, mathv, max_new_tokens=3)
    assert ev.num_rows == 3 and ev["sample_id"].to_pylist() == mathv["id"].to_pylist()
