"""The LLaVA family (a SigLIP tower, 1-D positions) through the same trainer: a tiny
LlavaForConditionalGeneration built from a config, on CPU."""

from __future__ import annotations

import pytest
import torch

from curate.synthetic_vision import generate_vision
from trainer import GRPOConfig, GRPOTrainer, SFTConfig, SFTTrainer, combine
from trainer.vision import TinyVLMSpec, VisionInputs, build_tiny_vlm, to_images, vision_tokenizer
from trainer.vision_generation import generate_vision_groups, vision_response_logprobs

SPEC = TinyVLMSpec(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, vision_dim=16,
                   family="llava")


@pytest.fixture(scope="module")
def tok():
    return vision_tokenizer()


@pytest.fixture(scope="module")
def model(tok):
    m = build_tiny_vlm(tok, SPEC, seed=1)
    with torch.no_grad():  # larger random weights: greedy paths that differ between prompts
        for p in m.parameters():
            p.mul_(4.0)
    return m.eval()


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    d = tmp_path_factory.mktemp("img")
    t = generate_vision("bars", 3, d, seed=0, level=1).to_pylist()
    t += generate_vision("cell", 2, d, seed=0, level=3).to_pylist()
    return [r["prompt"] for r in t] + ["add:1+2="], [r["images"] for r in t] + [[]]


def _pixels(model, images):
    return to_images(images.pixel_values, images.grids, model.config.vision_config.patch_size)


def test_shared_cache_greedy_equals_transformers_generate(model, tok, rows):
    inputs = VisionInputs(model, tok)
    prompts, images = rows
    g = 2
    gen = generate_vision_groups(model, inputs, inputs.encode(prompts, images), g, max_new_tokens=8,
                                 do_sample=False)
    assert len({tuple(r) for r in gen.response_ids.tolist()}) > 1  # not a constant model
    for i, (p, im) in enumerate(zip(prompts, images, strict=True)):
        one = inputs.encode([p], [im])
        kwargs = {"pixel_values": _pixels(model, one.images)} if im else {}
        ref = model.generate(input_ids=one.input_ids, attention_mask=one.attention_mask,
                             do_sample=False, max_new_tokens=8, suppress_tokens=inputs.blocked_ids,
                             eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, **kwargs)
        want = ref[0, one.input_ids.shape[1]:].tolist()
        for k in range(g):
            n = int(gen.response_mask[i * g + k].sum())
            assert gen.response_ids[i * g + k].tolist()[:n] == want[:n], (i, k)


def test_update_logprobs_equal_a_plain_forward(model, tok, rows):
    inputs = VisionInputs(model, tok)
    torch.manual_seed(3)
    gen = generate_vision_groups(model, inputs, inputs.encode(*rows), 2, max_new_tokens=6)
    logp = vision_response_logprobs(model, gen.prompt_ids, gen.prompt_mask, gen.response_ids,
                                    gen.response_mask, gen.images, blocked_ids=inputs.blocked_ids)
    ids = torch.cat([gen.prompt_ids, gen.response_ids], dim=1)
    attn = torch.cat([gen.prompt_mask, gen.response_mask], dim=1)
    per_row = [j for r in gen.images.row_images for j in r]  # every row's own image, in order
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=attn,
                       pixel_values=_pixels(model, gen.images)[per_row]).logits
    r = gen.response_ids.shape[1]
    logits = logits[:, -r - 1:-1].float()
    logits[..., inputs.blocked_ids] = float("-inf")
    want = torch.log_softmax(logits, -1).gather(-1, gen.response_ids.unsqueeze(-1)).squeeze(-1)
    m = gen.response_mask.bool()
    torch.testing.assert_close(logp[m], want[m], rtol=1e-5, atol=1e-5)


def test_sft_and_a_grpo_step_train_llava(tmp_path, tok):
    from curate.synthetic_vision import make_vision_suite

    data = make_vision_suite(12, tmp_path / "images", domains=("majority",), seed=0, max_level=1)
    model = build_tiny_vlm(tok, SPEC, seed=0)
    tower0 = [p.detach().clone() for p in model.model.vision_tower.parameters()]
    hist = SFTTrainer(model, tok, data, SFTConfig(max_steps=4, batch_size=12, lr=1e-2, device="cpu"),
                      tmp_path / "sft").train()
    assert hist[-1].loss < hist[0].loss
    assert any(not torch.equal(a, b) for a, b in
               zip(tower0, model.model.vision_tower.parameters(), strict=True))
    parity = combine({"parity": (lambda prompts, completions, **_:
                                 [float(sum(map(ord, c)) % 2) for c in completions], 1.0)})
    trainer = GRPOTrainer(model, tok, data, GRPOConfig(steps=1, prompts_per_step=6, group_size=4,
                                                       max_new_tokens=4, lr=1e-2, device="cpu"),
                          tmp_path / "run", reward=parity)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    m = trainer.train_step()
    assert m.informative_ratio > 0
    changed = {n for n, p in model.named_parameters() if not torch.equal(before[n], p)}
    assert any(".vision_tower." in n for n in changed) and any(".language_model." in n for n in changed)


@pytest.mark.parametrize("h, w", [(32, 32), (45, 37)])
def test_pixels_equal_transformers_siglip_processor(h, w):
    import numpy as np
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    from trainer.vision import ImageProcessor

    rgb = (np.random.default_rng(h).random((h, w, 3)) * 255).astype(np.uint8)
    want = SiglipImageProcessorPil(size={"height": 32, "width": 32})(rgb, return_tensors="pt")
    ours, grid = ImageProcessor(patch_size=8, merge_size=1, temporal_patch_size=1, mean=(0.5,) * 3,
                                std=(0.5,) * 3, fixed_size=32)(rgb)
    assert grid == (1, 4, 4)
    back = to_images(torch.from_numpy(ours), torch.tensor([grid]), 8)
    torch.testing.assert_close(back, want["pixel_values"], rtol=0, atol=1e-6)
