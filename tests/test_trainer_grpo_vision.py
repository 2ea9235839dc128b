"""GRPO on image prompts with a tiny Qwen2-VL: updates, image refs in the log, bad images,
fill mode, exact resume after a kill."""

from __future__ import annotations

import dataclasses
import os
import signal
import textwrap
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from test_trainer_grpo import _log, _run_child  # the tests folder is on sys.path

from curate.errors import DataError
from curate.rollout_log import ROLLOUT_SCHEMA
from curate.synthetic import make_suite
from curate.synthetic_vision import make_vision_suite
from trainer import GRPOConfig, GRPOTrainer, build_tiny_model, char_tokenizer, combine
from trainer.modeling import TinyModelSpec
from trainer.vision import TinyVLMSpec, build_tiny_vlm, vision_tokenizer

REPO = Path(__file__).resolve().parents[1]
SPEC = TinyVLMSpec(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, vision_dim=16)


def char_sum_parity(prompts, completions, **_):
    """Varies within a group for a random model, so groups are informative."""
    return [float(sum(map(ord, c)) % 2) for c in completions]


def _data(tmp_path, n=12, text_rows=0):
    t = make_vision_suite(n, tmp_path / "images", seed=0, max_level=2)
    if text_rows:
        t = pa.concat_tables([t, make_suite(text_rows, seed=0, max_level=1, domains=("add",))])
    return t


def _trainer(tmp_path, data, family="qwen2_vl", **cfg):
    tok = vision_tokenizer()
    model = build_tiny_vlm(tok, dataclasses.replace(SPEC, family=family), seed=0)
    config = GRPOConfig(**{"steps": 2, "prompts_per_step": 4, "group_size": 4, "max_new_tokens": 5,
                           "lr": 1e-2, "device": "cpu", **cfg})
    return GRPOTrainer(model, tok, data, config, tmp_path / "run",
                       reward=combine({"correct": (char_sum_parity, 1.0)}))


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl"])
def test_one_step_on_image_prompts_updates_the_model_and_logs_image_refs(tmp_path, family):
    data = _data(tmp_path, text_rows=4)
    tr = _trainer(tmp_path, data, family, prompts_per_step=8, beta=0.05)
    before = {n: p.detach().clone() for n, p in tr.model.named_parameters()}
    m = tr.train_step()
    assert m.informative_ratio > 0
    changed = {n for n, p in tr.model.named_parameters() if not torch.equal(before[n], p)}
    assert any(n.startswith("model.visual.") for n in changed)  # the vision tower learns too
    assert any(n.startswith("model.language_model.") for n in changed)
    log = pq.read_table(tmp_path / "run" / "rollouts" / "part-00000001-0000.parquet")
    assert log.schema.equals(ROLLOUT_SCHEMA) and log.num_rows == 8 * 4
    refs = {r["id"]: r["images"] for r in data.to_pylist()}
    for row in log.to_pylist():  # each row carries its sample's image references, never pixels
        assert row["images"] == refs[row["sample_id"]]
    assert any(row["images"] for row in log.to_pylist())


def test_fill_mode_keeps_images_across_rounds(tmp_path):
    tr = _trainer(tmp_path, _data(tmp_path, n=24), fill=True, prompts_per_step=3, group_size=2)
    before = [p.detach().clone() for p in tr.model.parameters()]
    m = tr.train_step()
    assert m.extra["kept_groups"] == 3
    assert any(not torch.equal(b, p) for b, p in zip(before, tr.model.parameters(), strict=True))
    log = pq.read_table(tmp_path / "run" / "rollouts")
    assert all(len(v) == 1 for v in log.column("images").to_pylist())


def test_a_missing_image_leaves_out_its_prompt_only(tmp_path):
    data = _data(tmp_path, n=8)
    rows = data.to_pylist()
    gone = rows[2]["images"][0]["path"]
    os.unlink(gone)
    tr = _trainer(tmp_path, data, prompts_per_step=8, group_size=2)
    with pytest.warns(UserWarning, match=rf"sample '{rows[2]['id']}': image '{gone}': file not found"):
        tr.train_step()
    assert [(e.sample_id, e.path) for e in tr.image_errors] == [(rows[2]["id"], gone)]
    log = pq.read_table(tmp_path / "run" / "rollouts")
    ids = set(log.column("sample_id").to_pylist())
    assert ids == {r["id"] for r in rows} - {rows[2]["id"]}  # the rest of the batch is there
    assert log.num_rows == 7 * 2


def test_a_text_only_model_refuses_image_rows(tmp_path):
    tok = char_tokenizer()
    model = build_tiny_model(tok, TinyModelSpec(hidden_size=16, num_layers=1, num_heads=2,
                                                intermediate_size=32))
    with pytest.raises(DataError, match="has images but the model is a text-only LM"):
        GRPOTrainer(model, tok, _data(tmp_path, n=4), GRPOConfig(steps=1, device="cpu"),
                    tmp_path / "run")


CHILD = textwrap.dedent(
    """
    import sys
    import torch
    torch.set_num_threads(1)
    sys.path.insert(0, {tests!r})
    from pathlib import Path
    from test_trainer_grpo_vision import SPEC, char_sum_parity
    from curate.synthetic_vision import make_vision_suite
    from trainer import GRPOConfig, GRPOTrainer, combine
    from trainer.vision import build_tiny_vlm, vision_tokenizer
    tok = vision_tokenizer()
    model = build_tiny_vlm(tok, SPEC, seed=0)
    data = make_vision_suite(12, Path(sys.argv[1]).parent / "images", seed=0, max_level=2)
    cfg = GRPOConfig(steps=4, prompts_per_step=3, group_size=3, max_new_tokens=4, lr=1e-2,
                     save_every=2, device="cpu")
    GRPOTrainer(model, tok, data, cfg, sys.argv[1], run_id="t",
                reward=combine({{"correct": (char_sum_parity, 1.0)}})).train()
    """
)


def test_kill_and_resume_gives_the_same_multimodal_log(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(tests=str(REPO / "tests")))
    straight, killed = tmp_path / "straight" / "run", tmp_path / "killed" / "run"
    assert _run_child(script, straight, None) == 0
    # killed after step 3's log part, before its checkpoint (the last one is step 2's)
    assert _run_child(script, killed, "after_log:3") == -signal.SIGKILL
    assert sorted({r["step"] for r in _log(killed)}) == [1, 2, 3]
    assert _run_child(script, killed, None) == 0
    a, b = _log(straight), _log(killed)
    assert len(a) == 4 * 3 * 3
    for ra, rb in zip(a, b, strict=True):  # image paths differ by run folder; hashes and all else agree
        assert [i["sha256"] for i in ra.pop("images")] == [i["sha256"] for i in rb.pop("images")]
        assert ra == rb
