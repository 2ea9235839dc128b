"""CPU cost of image prompts: a tiny Qwen2-VL against a text model of the same language size.

Prints seconds for group generation (P prompts x G responses x T new tokens,
shared prefill), for one update's forward + backward over those rows, and for
turning the images into patches (ours vs transformers' Qwen2VLImageProcessorPil),
measured side by side in one run. Never run as a test.

    .venv/bin/python bench/vision_cost.py --threads 1
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch


def _best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from curate.synthetic_vision import make_vision_suite
    from trainer.generation import generate_groups, response_logprobs
    from trainer.modeling import TinyModelSpec, build_tiny_model, char_tokenizer, quiet_transformers
    from trainer.vision import (
        ImageCache,
        ImageProcessor,
        TinyVLMSpec,
        VisionInputs,
        build_tiny_vlm,
        vision_tokenizer,
    )
    from trainer.vision_generation import generate_vision_groups, vision_response_logprobs

    quiet_transformers()
    rows = make_vision_suite(args.prompts, tempfile.mkdtemp(), seed=0, max_level=2).to_pylist()
    vspec = TinyVLMSpec()
    vtok = vision_tokenizer()
    vlm = build_tiny_vlm(vtok, vspec)
    tok = char_tokenizer()
    lm = build_tiny_model(tok, TinyModelSpec(hidden_size=vspec.hidden_size, num_layers=vspec.num_layers,
                                             num_heads=vspec.num_heads,
                                             intermediate_size=vspec.intermediate_size,
                                             max_positions=vspec.max_positions))
    inputs = VisionInputs(vlm, vtok)
    prompts = [r["prompt"] for r in rows]
    images = [r["images"] for r in rows]
    g, t = args.group, args.tokens

    def vgen():
        torch.manual_seed(0)
        return generate_vision_groups(vlm, inputs, inputs.encode(prompts, images), g, t)

    def tgen():
        torch.manual_seed(0)
        return generate_groups(lm, tok, prompts, g, t)

    vg, tg = vgen(), tgen()

    def vupd():
        vlm.zero_grad()
        lp = vision_response_logprobs(vlm, vg.prompt_ids, vg.prompt_mask, vg.response_ids,
                                      vg.response_mask, vg.images, blocked_ids=inputs.blocked_ids)
        (lp * vg.response_mask).sum().backward()

    def tupd():
        lm.zero_grad()
        lp = response_logprobs(lm, tg.prompt_ids, tg.prompt_mask, tg.response_ids, tg.response_mask)
        (lp * tg.response_mask).sum().backward()

    from PIL import Image
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    hf = Qwen2VLImageProcessorPil(patch_size=vspec.patch_size, merge_size=vspec.merge_size,
                                  temporal_patch_size=2, min_pixels=64, max_pixels=28 * 28 * 1280)
    ours = ImageProcessor.for_model(vlm)
    pix = [np.asarray(Image.open(r["images"][0]["path"]).convert("RGB")) for r in rows]

    def hf_proc():
        hf(images=[Image.fromarray(p) for p in pix], return_tensors="pt")

    def our_proc():
        for p in pix:
            ours(p)

    def cold_cache():
        c = ImageCache(ours)
        for r in rows:
            c.get(r["images"][0], r["id"])

    n_rows = args.prompts * g
    vision_tokens = int((vg.prompt_ids[0] == vlm.config.image_token_id).sum())
    print(f"{args.prompts} prompts x {g} responses x {t} new tokens, {args.threads} thread(s); "
          f"VLM {sum(p.numel() for p in vlm.parameters()):,} params ({vision_tokens} image tokens "
          f"per 32x32 image), text LM {sum(p.numel() for p in lm.parameters()):,} params")
    res = {}
    for name, fn in [("generate: text", tgen), ("generate: vision", vgen),
                     ("update fwd+bwd: text", tupd), ("update fwd+bwd: vision", vupd),
                     ("pixels: transformers processor", hf_proc), ("pixels: ours", our_proc),
                     ("decode+pixels, cold cache", cold_cache)]:
        res[name] = _best(fn, args.repeat)
        print(f"  {name:32s} {res[name] * 1000:8.1f} ms")
    print(f"  generate vision / text: {res['generate: vision'] / res['generate: text']:.2f}x; "
          f"update vision / text: {res['update fwd+bwd: vision'] / res['update fwd+bwd: text']:.2f}x; "
          f"processor transformers / ours: "
          f"{res['pixels: transformers processor'] / res['pixels: ours']:.1f}x ({n_rows} rows)")


if __name__ == "__main__":
    main()
