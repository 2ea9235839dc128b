"""SFT cold start: response-only loss, padding/packing, learning, saving; the tokenizer; configs."""

from __future__ import annotations

import pyarrow as pa
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from trainer import ConfigError, GRPOConfig, SFTConfig, SFTTrainer, build_tiny_model, char_tokenizer
from trainer.modeling import TinyModelSpec, auto_device
from trainer.sft import IGNORE, pack_examples, pad_batch, tokenize_pairs

SPEC = TinyModelSpec(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64)


def test_char_tokenizer_round_trips_and_reloads(tmp_path):
    tok = char_tokenizer()
    text = "cnt:a:abca=\\boxed{2}"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text
    assert len(ids) == len(text) - len("\\boxed{") + 1  # the tag is one token
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert again(text, add_special_tokens=False)["input_ids"] == ids
    assert again.padding_side == "left" and again.pad_token_id != again.eos_token_id


def test_labels_cover_only_the_response_and_eos():
    tok = char_tokenizer()
    (ids, labels), = tokenize_pairs(tok, ["add:1+2="], ["\\boxed{3}"], 64)
    n_prompt = len("add:1+2=")
    assert labels[:n_prompt] == [IGNORE] * n_prompt
    assert labels[n_prompt:] == ids[n_prompt:]
    assert ids[-1] == tok.eos_token_id
    batch = pad_batch([(ids, labels), (ids[:4], labels[:4])], tok.pad_token_id)
    assert batch["attention_mask"][1].tolist() == [1] * 4 + [0] * (len(ids) - 4)
    assert (batch["labels"][1, 4:] == IGNORE).all()


def test_packing_keeps_every_token_and_restarts_positions():
    ex = [([1, 2, 3], [IGNORE, 2, 3]), ([4, 5], [IGNORE, 5]), ([6, 7, 8, 9], [IGNORE, 7, 8, 9])]
    rows = pack_examples(ex, max_length=5, pad_id=0)
    assert sorted(t for r in rows for t in r["ids"]) == list(range(1, 10))
    assert all(len(r["ids"]) <= 5 for r in rows)
    four = next(r for r in rows if r["ids"][:4] == [6, 7, 8, 9])
    assert four["pos"][:4] == [0, 1, 2, 3]


@pytest.mark.parametrize("packing", [False, True])
def test_sft_learns_and_saves_a_loadable_model(tmp_path, packing):
    tok = char_tokenizer()
    model = build_tiny_model(tok, SPEC, seed=0)
    prompts = [f"max:{a},{b}=" for a in range(5) for b in range(5)]
    table = pa.table({"prompt": prompts, "solution": [f"\\boxed{{{p[4]}}}" for p in prompts]})
    cfg = SFTConfig(max_steps=30, batch_size=8, grad_accum=2, lr=1e-2, packing=packing,
                    max_length=32, device="cpu", lr_schedule="cosine", warmup_steps=3)
    sft = SFTTrainer(model, tok, table, cfg, tmp_path / "sft")
    hist = sft.train()
    assert hist[-1].loss < hist[0].loss * 0.5
    assert hist[-1].lr < hist[3].lr  # cosine decays
    out = sft.save()
    again = AutoModelForCausalLM.from_pretrained(out)
    x = torch.tensor([[5, 6, 7]])
    assert torch.allclose(again(x).logits, sft.model(x).logits, atol=1e-5)


def test_sft_rejects_data_without_responses(tmp_path):
    tok = char_tokenizer()
    with pytest.raises(ValueError, match="solution"):
        SFTTrainer(build_tiny_model(tok, SPEC), tok, pa.table({"prompt": ["a"]}), SFTConfig(),
                   tmp_path)


def test_configs_name_unknown_keys_and_bad_values():
    with pytest.raises(ConfigError, match="grpo.clip_hi: unknown key"):
        GRPOConfig.from_dict({"clip_hi": 0.3}, section="grpo")
    with pytest.raises(ConfigError, match="sft.lr"):
        SFTConfig.from_dict({"lr": -1}, section="sft")


def test_cpu_is_fp32():
    dev, dtype = auto_device("cpu")
    assert dev.type == "cpu" and dtype == torch.float32
