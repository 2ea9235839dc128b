"""Vision-language inputs, shared-cache group generation and log-probs on a tiny Qwen2-VL
and a tiny Qwen2.5-VL (CPU)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from curate.synthetic_vision import generate_vision, write_images
from trainer.vision import (
    ImageBatch,
    ImageError,
    ImageProcessor,
    TinyVLMSpec,
    VisionInputs,
    build_tiny_vlm,
    mm_token_type_ids,
    vision_tokenizer,
)
from trainer.vision_generation import generate_vision_groups, vision_response_logprobs

SPEC = TinyVLMSpec(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, vision_dim=16)


@pytest.fixture(scope="module")
def tok():
    return vision_tokenizer()


@pytest.fixture(scope="module", params=["qwen2_vl", "qwen2_5_vl"])
def model(tok, request):
    """A tiny model of each supported family (Qwen2.5-VL: window attention in the tower)."""
    torch.manual_seed(0)
    m = build_tiny_vlm(tok, dataclasses.replace(SPEC, family=request.param), seed=1)
    with torch.no_grad():  # larger random weights: greedy paths that differ between prompts
        for p in m.parameters():
            p.mul_(4.0)
    return m.eval()


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    d = tmp_path_factory.mktemp("img")
    t = generate_vision("bars", 3, d, seed=0, level=1).to_pylist()
    t += generate_vision("cell", 2, d, seed=0, level=3).to_pylist()
    return t


@pytest.mark.parametrize("h,w,patch", [(32, 32, 4), (32, 32, 8), (30, 45, 4), (28, 28, 14)])
def test_pixels_equal_transformers_image_processor(h, w, patch):
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    img = np.random.default_rng(h * w).integers(0, 256, (h, w, 3)).astype(np.uint8)
    hf = Qwen2VLImageProcessorPil(patch_size=patch, merge_size=2, temporal_patch_size=2,
                                  min_pixels=8 * 8, max_pixels=28 * 28 * 1280)
    ref = hf(images=[Image.fromarray(img)], return_tensors="np")
    mine, grid = ImageProcessor(patch_size=patch)(img)
    assert grid == tuple(ref["image_grid_thw"][0].tolist())
    assert np.array_equal(mine, ref["pixel_values"])


def test_each_image_decoded_once_and_shared(model, tok, rows):
    inputs = VisionInputs(model, tok)
    prompts = [r["prompt"] for r in rows] * 3
    images = [r["images"] for r in rows] * 3
    batch = inputs.encode(prompts, images, [r["id"] for r in rows] * 3)
    assert inputs.cache.decoded == len(rows)
    assert len(batch.images.grids) == len(rows)  # distinct images once in the batch
    assert batch.images.row_images == [[i] for i in range(len(rows))] * 3
    again = inputs.encode(prompts[:2], images[:2])
    assert inputs.cache.decoded == len(rows) and again.images.row_images == [[0], [1]]
    n_pad = (batch.input_ids == model.config.image_token_id).sum(dim=1)
    assert n_pad.tolist() == [16] * len(prompts)  # 32x32, patch 4, 2x2 merge


def test_bad_images_name_the_sample_and_path_and_spare_the_rest(model, tok, rows, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png at all")
    missing = str(tmp_path / "missing.png")
    good = rows[0]["images"]
    wrong_hash = [{"path": good[0]["path"], "sha256": "0" * 64}]
    inputs = VisionInputs(model, tok)
    cases = [([{"path": missing, "sha256": None}], "file not found"),
             ([{"path": str(broken), "sha256": None}], "does not decode as an image"),
             (wrong_hash, "does not match its sha256")]
    for refs, reason in cases:
        with pytest.raises(ImageError) as err:
            inputs.encode(["a=", "b="], [good, refs], ["ok", "bad-row"])
        assert err.value.sample_id == "bad-row" and err.value.path == refs[0]["path"]
        assert reason in str(err.value) and "bad-row" in str(err.value)
    # skip mode: the bad rows are reported, the others encode exactly as alone
    prompts = ["a=", "b=", "c=", "d="]
    imgs = [good, cases[0][0], [], cases[1][0]]
    out = inputs.encode(prompts, imgs, ["s0", "s1", "s2", "s3"], on_error="skip")
    assert out.rows == [0, 2]
    assert [(e.sample_id, e.path) for e in out.errors] == [("s1", missing), ("s3", str(broken))]
    alone = inputs.encode(["a=", "c="], [good, []])
    assert torch.equal(out.input_ids, alone.input_ids)
    assert torch.equal(out.images.pixel_values, alone.images.pixel_values)


def _rows_inputs(rows, k=None):
    rows = rows[:k] if k else rows
    return [r["prompt"] for r in rows], [r["images"] for r in rows]


def test_shared_cache_greedy_equals_per_row_generation(model, tok, rows):
    inputs = VisionInputs(model, tok)
    prompts, images = _rows_inputs(rows)
    prompts, images = prompts + ["add:1+2="], images + [[]]  # a text-only row too
    g = 3
    batch = inputs.encode(prompts, images)
    gen = generate_vision_groups(model, inputs, batch, g, max_new_tokens=8, do_sample=False)
    assert gen.response_ids.shape[0] == len(prompts) * g
    assert len({tuple(r) for r in gen.response_ids.tolist()}) > 1  # not a constant model
    for i, (p, im) in enumerate(zip(prompts, images, strict=True)):
        one = inputs.encode([p], [im])
        # transformers' own generate, this prompt alone, vision tokens suppressed
        kwargs = {}
        if im:
            kwargs = {"pixel_values": one.images.pixel_values, "image_grid_thw": one.images.grids,
                      "mm_token_type_ids": mm_token_type_ids(model, one.input_ids)}
        ref = model.generate(input_ids=one.input_ids, attention_mask=one.attention_mask,
                             do_sample=False, max_new_tokens=8, suppress_tokens=inputs.blocked_ids,
                             eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, **kwargs)
        want = ref[0, one.input_ids.shape[1]:].tolist()
        for k in range(g):
            got = gen.response_ids[i * g + k].tolist()
            n = int(gen.response_mask[i * g + k].sum())
            assert got[:n] == want[:n], (i, k)
            assert n == len(want) or want[n - 1] == tok.eos_token_id


def test_blocked_tokens_are_never_sampled(model, tok, rows):
    inputs = VisionInputs(model, tok)
    with torch.no_grad():  # make the image placeholder the model's favourite token
        model.lm_head.weight[model.config.image_token_id] += 50.0
    try:
        batch = inputs.encode(*_rows_inputs(rows, 2))
        torch.manual_seed(0)
        gen = generate_vision_groups(model, inputs, batch, 4, max_new_tokens=6)
        assert not set(gen.response_ids.flatten().tolist()) & set(inputs.blocked_ids)
    finally:
        with torch.no_grad():
            model.lm_head.weight[model.config.image_token_id] -= 50.0


def test_update_logprobs_equal_a_plain_forward(model, tok, rows):
    inputs = VisionInputs(model, tok)
    prompts, images = _rows_inputs(rows)
    prompts, images = prompts + ["add:1+2="], images + [[]]
    torch.manual_seed(3)
    gen = generate_vision_groups(model, inputs, inputs.encode(prompts, images), 2, max_new_tokens=6)
    logp = vision_response_logprobs(model, gen.prompt_ids, gen.prompt_mask, gen.response_ids,
                                    gen.response_mask, gen.images, blocked_ids=inputs.blocked_ids)
    # the plain way: every row's own pixels, transformers computes the rope index itself
    ids = torch.cat([gen.prompt_ids, gen.response_ids], dim=1)
    attn = torch.cat([gen.prompt_mask, gen.response_mask], dim=1)
    sizes = gen.images.grids.prod(-1).tolist()
    starts = np.concatenate([[0], np.cumsum(sizes)]).tolist()
    per_row = [gen.images.pixel_values[starts[j]:starts[j + 1]]
               for r in gen.images.row_images for j in r]
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=attn, pixel_values=torch.cat(per_row),
                       image_grid_thw=gen.images.row_grids(),
                       mm_token_type_ids=mm_token_type_ids(model, ids)).logits
    r = gen.response_ids.shape[1]
    logits = logits[:, -r - 1:-1].float()
    logits[..., inputs.blocked_ids] = float("-inf")
    want = torch.log_softmax(logits, -1).gather(-1, gen.response_ids.unsqueeze(-1)).squeeze(-1)
    m = gen.response_mask.bool()
    torch.testing.assert_close(logp[m], want[m], rtol=1e-5, atol=1e-5)


def test_update_runs_the_tower_once_per_image_and_trains_it(model, tok, rows):
    inputs = VisionInputs(model, tok)
    batch = inputs.encode(*_rows_inputs(rows, 2))
    gen = generate_vision_groups(model, inputs, batch, 4, max_new_tokens=4)
    calls = []
    hook = model.model.visual.register_forward_hook(lambda mod, a, out: calls.append(a[0].shape[0]))
    try:
        model.zero_grad()
        logp = vision_response_logprobs(model, gen.prompt_ids, gen.prompt_mask, gen.response_ids,
                                        gen.response_mask, gen.images, blocked_ids=inputs.blocked_ids)
        (logp * gen.response_mask).sum().backward()
    finally:
        hook.remove()
    assert calls == [2 * 64]  # one tower pass over the 2 distinct images (64 patches each)
    assert model.model.visual.patch_embed.proj.weight.grad.abs().sum() > 0
    model.zero_grad()
    # selecting rows keeps only the images they use
    sub = gen.select([5, 6])
    assert sub.images.row_images == [[0], [0]] and len(sub.images.grids) == 1


def test_image_batch_concat_dedups_by_key():
    a = ImageBatch(torch.ones(4, 2), torch.tensor([[1, 2, 2]]), [[0], []], ["x"])
    b = ImageBatch(torch.full((8, 2), 2.0), torch.tensor([[1, 2, 2], [1, 2, 2]]), [[1], [0, 1]],
                   ["y", "x"])
    c = ImageBatch.concat([a, b])
    assert c.keys == ["x", "y"] and c.row_images == [[0], [], [0], [1, 0]]
    assert c.pixel_values[:4].eq(1).all() and c.pixel_values[4:].eq(2).all()


def test_rope_positions_equal_transformers_rope_index(model, tok, tmp_path):
    from trainer.vision import rope_positions

    # two images per row, non-square grids, text-only rows and left padding in one batch
    refs = write_images([np.full((32, 48, 3), 10, np.uint8), np.full((16, 32, 3), 200, np.uint8),
                         np.full((32, 32, 3), 90, np.uint8)], tmp_path)
    inputs = VisionInputs(model, tok)
    batch = inputs.encode(["ab=", "a much longer prompt=", "x=", "", "q="],
                          [[refs[0], refs[1]], [refs[2]], [], [refs[1]], [refs[2], refs[0]]])
    for extra in (0, 4):  # a prompt, and a prompt with a right-padded response
        ids = torch.cat([batch.input_ids, torch.full((5, extra), 30)], dim=1)
        mask = torch.cat([batch.attention_mask, torch.ones(5, extra, dtype=torch.long)], dim=1)
        if extra:
            mask[1, -2:] = 0
        want, _ = model.model.get_rope_index(ids, mm_token_type_ids=mm_token_type_ids(model, ids),
                                             image_grid_thw=batch.images.row_grids(),
                                             attention_mask=mask)
        assert torch.equal(rope_positions(model, ids, mask, batch.images), want)
