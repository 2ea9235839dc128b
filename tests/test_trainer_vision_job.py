"""The multimodal cold start and evaluation, and `thresher run` on the visual suite:
SFT on image prompts, held-out eval with images and with every image blanked,
the whole job end to end (curation, SFT, GRPO, eval, manifest, resume)."""

from __future__ import annotations

import json

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from vision_helpers import TINY_VLM_MODEL

from curate.synthetic import make_suite
from curate.synthetic_vision import make_vision_suite
from pipelines.cli import main
from trainer import SFTConfig, SFTTrainer
from trainer.evaluation import blank_images, evaluate
from trainer.sft import pad_batch
from trainer.vision import (
    ImageError,
    TinyVLMSpec,
    VisionInputs,
    build_tiny_vlm,
    vision_logits,
    vision_tokenizer,
)

SPEC = TinyVLMSpec(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, vision_dim=16)


@pytest.fixture
def tok():
    return vision_tokenizer()


def _rows(tmp_path, n=8):
    return make_vision_suite(n, tmp_path / "images", domains=("bars", "majority"), seed=0, max_level=1)


def test_sft_on_image_prompts_trains_the_tower_and_mixes_text_rows(tmp_path, tok):
    data = pa.concat_tables([_rows(tmp_path), make_suite(4, seed=0, max_level=1, domains=("add",))])
    model = build_tiny_vlm(tok, SPEC, seed=0)
    tower0 = [p.detach().clone() for p in model.model.visual.parameters()]
    sft = SFTTrainer(model, tok, data, SFTConfig(max_steps=6, batch_size=12, lr=1e-2, device="cpu"),
                     tmp_path / "sft")
    assert any(not refs for refs in sft.images) and any(sft.images)
    hist = sft.train()
    assert hist[-1].loss < hist[0].loss
    assert any(not torch.equal(a, b) for a, b in zip(tower0, model.model.visual.parameters(), strict=False))


def test_sft_batch_logits_equal_each_row_alone(tmp_path, tok):
    """Right padding in an SFT batch changes nothing: rope positions come from the mask."""
    model = build_tiny_vlm(tok, SPEC, seed=0).eval()
    sft = SFTTrainer(model, tok, _rows(tmp_path, 4), SFTConfig(max_steps=1, device="cpu"),
                     tmp_path / "sft")
    batch = sft._collate(sft.examples, list(range(len(sft.examples))))
    with torch.no_grad():
        full = vision_logits(model, batch["input_ids"], batch["attention_mask"], batch["images"])
        for i, ex in enumerate(sft.examples):
            one = sft._collate([ex], [i])
            alone = vision_logits(model, one["input_ids"], one["attention_mask"], one["images"])
            n = len(ex[0])
            torch.testing.assert_close(full[i, :n], alone[0, :n], atol=1e-5, rtol=1e-4)
    assert pad_batch(sft.examples, tok.pad_token_id)["input_ids"].shape == batch["input_ids"].shape


def test_sft_names_a_bad_image_and_refuses_packing(tmp_path, tok):
    data = _rows(tmp_path, 4)
    ref = data.column("images")[2].as_py()[0]
    bad_id = data.column("id")[2].as_py()
    (tmp_path / "gone").mkdir()
    import os

    os.replace(ref["path"], tmp_path / "gone" / "x.png")
    model = build_tiny_vlm(tok, SPEC, seed=0)
    with pytest.raises(ImageError) as err:
        SFTTrainer(model, tok, data, SFTConfig(max_steps=1, device="cpu"), tmp_path / "sft")
    assert bad_id in str(err.value) and ref["path"] in str(err.value)
    with pytest.raises(ValueError, match="packing"):
        SFTTrainer(model, tok, data.slice(0, 2), SFTConfig(max_steps=1, packing=True, device="cpu"),
                   tmp_path / "sft")


def test_evaluate_image_prompts_and_the_blank_image_control(tmp_path, tok):
    data = _rows(tmp_path, 6)
    model = build_tiny_vlm(tok, SPEC, seed=0)
    greedy = evaluate(model, tok, data, max_new_tokens=4)
    assert greedy["sample_id"].to_pylist() == data["id"].to_pylist()
    # greedy evaluation of one row equals the batch's row (images go with their prompts)
    VisionInputs(model, tok)  # the model is one the trainer supports
    one = evaluate(model, tok, data.slice(3, 1), max_new_tokens=4)
    assert one["response"][0] == greedy["response"][3]
    sampled = evaluate(model, tok, data, max_new_tokens=4, k=3, temperature=1.0, seed=1)
    assert sampled.num_rows == 18 and sampled["sample_idx"].to_pylist()[:3] == [0, 1, 2]
    blank = blank_images(data, tmp_path / "blank")
    assert len(list((tmp_path / "blank").glob("*.png"))) == 1
    assert blank["prompt"] == data["prompt"] and blank["answer"] == data["answer"]
    assert evaluate(model, tok, blank, max_new_tokens=4).num_rows == 6


VISION = """
[run]
dir = "{run}"
seed = 0
device = "cpu"
threads = 1

[data]
suite = "vision"
domains = ["majority", "vcount"]
max_level = 1
n_rl = 40
n_sft = 24
n_eval = 8
solution_noise = 0.3
noise_style = "systematic"

""" + TINY_VLM_MODEL + """
[sft]
max_steps = 4
batch_size = 8
max_length = 48

[grpo]
steps = 2
prompts_per_step = 4
group_size = 4
max_new_tokens = 6
save_every = 1

[eval]
max_new_tokens = 6
k = 2
"""


def test_thresher_run_on_the_visual_suite(tmp_path, capsys):
    run = tmp_path / "run"
    cfg = tmp_path / "vision.toml"
    cfg.write_text(VISION.format(run=run))
    assert main(["run", str(cfg), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "images blanked" in out

    ev = json.loads((run / "manifest.json").read_text())["eval"]
    assert {"cold_start", "grpo", "gain", "blank_image"} <= set(ev)
    assert 0 <= ev["blank_image"] <= 1
    assert ev["gain"] == pytest.approx(ev["grpo"] - ev["cold_start"])
    # the cold-start set went through curation with its images
    sft = pq.read_table(next((run / "data" / "sft").glob("*.parquet")))
    assert all(len(v) == 1 for v in sft["images"].to_pylist())
    # every rollout row references its image (path + sha256), never pixels
    log = duckdb.sql(f"SELECT images FROM read_parquet('{run}/rollouts/*.parquet')").fetchall()
    assert len(log) == 2 * 4 * 4 and all(len(r[0]) == 1 and r[0][0]["sha256"] for r in log)
    blank = pq.read_table(run / "eval" / "grpo_blank.parquet")
    assert set(blank["mode"].to_pylist()) == {"greedy", "sampled"}

    # a second run resumes: nothing retrained, the same log
    assert main(["run", str(cfg), "--no-progress"]) == 0
    again = duckdb.sql(f"SELECT count(*) FROM read_parquet('{run}/rollouts/*.parquet')").fetchall()
    assert again[0][0] == len(log)

    # query, stats and report read the multimodal run; the report shows image prompts
    capsys.readouterr()
    assert main(["query", str(run), "SELECT count(DISTINCT images[1].sha256) AS n FROM rollouts"]) == 0
    assert main(["stats", str(run)]) == 0
    assert main(["report", str(run)]) == 0
    page = (run / "report.html").read_text()
    assert "Image prompts" in page and page.count("<img") >= 1 and "data:image/png;base64," in page


def test_vision_suite_domains_are_checked(tmp_path, capsys):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[data]\nsuite = "vision"\ndomains = ["bars", "add"]\n')
    assert main(["run", str(cfg), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "'add'" in err and "bars" in err


def test_thresher_train_on_image_files_builds_a_vlm(tmp_path):
    from curate.io import write_parquet_atomic
    from curate.synthetic_vision import make_vision_splits

    train, held = make_vision_splits(24, 4, tmp_path / "images", ("majority",), seed=0, max_level=1)
    write_parquet_atomic(train, tmp_path / "train.parquet")
    write_parquet_atomic(held, tmp_path / "eval.parquet")
    cfg = tmp_path / "train.toml"
    cfg.write_text(f"""
[run]
dir = "{tmp_path / 'run'}"
device = "cpu"
[data]
sft = "{tmp_path / 'train.parquet'}"
rl = "{tmp_path / 'train.parquet'}"
eval = "{tmp_path / 'eval.parquet'}"
{TINY_VLM_MODEL}family = "qwen2_5_vl"
[sft]
max_steps = 2
max_length = 48
[grpo]
steps = 1
prompts_per_step = 2
group_size = 2
max_new_tokens = 4
""")
    assert main(["train", str(cfg), "--no-progress"]) == 0
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["grpo"]["steps"] == 1 and 0 <= manifest["eval_accuracy"] <= 1
    saved = json.loads((tmp_path / "run" / "checkpoints" / "sft" / "final" / "config.json").read_text())
    assert saved["model_type"] == "qwen2_5_vl"
