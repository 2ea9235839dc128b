"""Group sampling and response log-probs for vision-language models, with one prompt
prefill (vision tower included) shared by the whole group.

The multimodal twin of `trainer.generation.generate_groups` /
`response_logprobs`. Each distinct image prompt is prefilled once (its images
through the vision tower once), its KV cache repeated G times, and decoding
continues with explicit multimodal rotary positions: after the prompt every
new token is text, so all three rope axes advance together from the prompt's
largest position. The vision special tokens are blocked while sampling (a
sampled ``<|image_pad|>`` would have no image behind it) and excluded the same
way from the log-probs, so the update scores responses under the distribution
that sampled them. Policy, old policy and reference all take the same inputs:
prompt ids, response ids, masks and the `ImageBatch`.

>>> from trainer.vision import TinyVLMSpec, VisionInputs, build_tiny_vlm, vision_tokenizer
>>> import numpy as np, tempfile
>>> from curate.synthetic_vision import write_images
>>> tok = vision_tokenizer()
>>> model = build_tiny_vlm(tok, TinyVLMSpec(hidden_size=32, num_layers=1, intermediate_size=64))
>>> refs = write_images([np.full((32, 32, 3), 200, np.uint8)], tempfile.mkdtemp())
>>> inputs = VisionInputs(model, tok)
>>> batch = inputs.encode(["bar:tallest="], [refs])
>>> gen = generate_vision_groups(model, inputs, batch, group_size=3, max_new_tokens=4)
>>> gen.response_ids.shape[0], gen.images.row_images, len(gen.images.grids)
(3, [[0], [0], [0]], 1)
>>> logp = vision_response_logprobs(model, gen.prompt_ids, gen.prompt_mask, gen.response_ids,
...                                 gen.response_mask, gen.images, blocked_ids=inputs.blocked_ids)
>>> logp.shape == gen.response_ids.shape
True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from trainer.generation import (
    Generation,
    _cache_of,
    _sample,
    decode_cached,
    decode_texts,
)
from trainer.vision import (
    ImageBatch,
    VisionInputs,
    VisionPrompts,
    embed_inputs,
    rope_positions,
    vision_logits,
)


@dataclass
class VisionGeneration(Generation):
    """A `Generation` whose rows also carry their images (`ImageBatch`, shared per prompt)."""

    images: ImageBatch | None = None

    def select(self, idx: Sequence[int]) -> VisionGeneration:
        """The rows `idx` (images re-indexed to the ones those rows use)."""
        rows = super().select(idx)
        return VisionGeneration(rows.prompt_ids, rows.prompt_mask, rows.response_ids,
                                rows.response_mask, rows.texts,
                                self.images.select_rows(list(idx)).used())


def _block(logits: torch.Tensor, blocked_ids: Sequence[int]) -> torch.Tensor:
    if blocked_ids:
        logits[..., list(blocked_ids)] = float("-inf")
    return logits


@torch.no_grad()
def generate_vision_groups(
    model, inputs: VisionInputs, batch: VisionPrompts, group_size: int, max_new_tokens: int,
    temperature: float = 1.0, top_p: float = 1.0, do_sample: bool = True,
) -> VisionGeneration:
    """`group_size` responses per image prompt, prefilling each prompt once.

    Rows are prompt-major (prompt i's responses are rows i*G .. i*G+G-1), like
    `trainer.generation.generate_groups`. `do_sample=False` decodes greedily.
    """
    tok = inputs.tokenizer
    device = next(model.parameters()).device
    ids, mask = batch.input_ids.to(device), batch.attention_mask.to(device)
    images = batch.images.to(device)
    was_training = model.training
    model.eval()
    pos = rope_positions(model, ids, mask, images)
    embeds = embed_inputs(model, ids, images)
    out = model(inputs_embeds=embeds, attention_mask=mask, position_ids=pos, use_cache=True,
                logits_to_keep=1)
    cache = _cache_of(out)
    g = group_size
    if g > 1:
        cache.batch_repeat_interleave(g)
    logits = out.logits[:, -1, :].float().repeat_interleave(g, dim=0)
    # every response token is text: all three axes continue from the prompt's largest position
    if pos.dim() == 3:
        next_pos = (pos.amax(dim=(0, 2)) + 1).repeat_interleave(g).view(1, -1, 1).expand(3, -1, 1)
    else:  # 1-D positions (LLaVA)
        next_pos = (pos.amax(dim=1) + 1).repeat_interleave(g).view(-1, 1)
    p_ids, p_mask = ids.repeat_interleave(g, dim=0), mask.repeat_interleave(g, dim=0)

    def pick(lg: torch.Tensor) -> torch.Tensor:
        lg = _block(lg, inputs.blocked_ids)  # a sampled image token would break the rope index
        return _sample(lg, temperature, top_p) if do_sample else lg.argmax(dim=-1)

    tokens, rmask = decode_cached(model, cache, logits, p_mask, next_pos, max_new_tokens,
                                  tok.eos_token_id, tok.pad_token_id, pick)
    if was_training:
        model.train()
    texts = decode_texts(tok, tokens, rmask)
    return VisionGeneration(p_ids, p_mask, tokens, rmask, texts, images.repeat_rows(g))


def vision_response_logprobs(
    model, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, response_ids: torch.Tensor,
    response_mask: torch.Tensor, images: ImageBatch, temperature: float = 1.0,
    blocked_ids: Sequence[int] = (),
) -> torch.Tensor:
    """(B, R) log-probabilities of each response token given the image prompt and earlier tokens.

    The vision tower runs once per distinct image of `images` (rows that share
    an image share its features, and their gradients add up there); positions
    are Qwen2-VL's rope index over prompt + response, which is what the
    sampler used. `blocked_ids` are removed from the distribution (renormalised)
    as in `generate_vision_groups`.
    """
    input_ids = torch.cat([prompt_ids, response_ids], dim=1)
    attn = torch.cat([prompt_mask, response_mask], dim=1)
    r = response_ids.shape[1]
    logits = vision_logits(model, input_ids, attn, images, logits_to_keep=r + 1)[:, :-1, :]
    logits = _block(logits.float() / temperature, blocked_ids)
    logp = torch.log_softmax(logits, dim=-1)
    return logp.gather(-1, response_ids.unsqueeze(-1)).squeeze(-1)
