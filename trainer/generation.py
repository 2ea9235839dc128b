"""Batched generation with `transformers` `generate` (left padding, stop at EOS) and
per-token log-probabilities of responses under a model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass
class Generation:
    """Token tensors of a batch of prompts and their responses.

    `prompt_ids`/`prompt_mask`: (B, P), left padded. `response_ids`/`response_mask`:
    (B, R); the mask covers response tokens up to and including the first EOS.
    """

    prompt_ids: torch.Tensor
    prompt_mask: torch.Tensor
    response_ids: torch.Tensor
    response_mask: torch.Tensor
    texts: list[str]

    @property
    def response_lengths(self) -> list[int]:
        return self.response_mask.sum(dim=1).tolist()

    @property
    def prompt_lengths(self) -> list[int]:
        return self.prompt_mask.sum(dim=1).tolist()

    def select(self, idx: Sequence[int]) -> Generation:
        """The rows `idx`, in that order."""
        ix = torch.as_tensor(list(idx), dtype=torch.long)
        return Generation(self.prompt_ids[ix], self.prompt_mask[ix], self.response_ids[ix],
                          self.response_mask[ix], [self.texts[i] for i in ix.tolist()])


def encode_prompts(tokenizer, prompts: Sequence[str], device: torch.device):
    enc = tokenizer(list(prompts), padding=True, return_tensors="pt", add_special_tokens=False)
    if tokenizer.padding_side != "left":  # decoder-only generation needs left padding
        raise ValueError("tokenizer.padding_side must be 'left' for generation")
    return enc["input_ids"].to(device), enc["attention_mask"].to(device)


@torch.no_grad()
def generate(
    model,
    tokenizer,
    prompts: Sequence[str],
    max_new_tokens: int,
    do_sample: bool = True,
    temperature: float = 1.0,
    top_p: float = 1.0,
    batch_size: int | None = None,
) -> Generation:
    """Sample (or greedily decode) one response per prompt, in batches of `batch_size`."""
    device = next(model.parameters()).device
    prompts = list(prompts)
    if batch_size and len(prompts) > batch_size:
        parts = [generate(model, tokenizer, prompts[i:i + batch_size], max_new_tokens, do_sample,
                          temperature, top_p) for i in range(0, len(prompts), batch_size)]
        return concat_generations(parts, tokenizer.pad_token_id)
    ids, mask = encode_prompts(tokenizer, prompts, device)
    was_training = model.training
    model.eval()
    kwargs = {"do_sample": do_sample, "max_new_tokens": max_new_tokens,
              "pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id}
    if do_sample:
        kwargs.update(temperature=temperature, top_p=top_p, top_k=0)
    out = model.generate(input_ids=ids, attention_mask=mask, **kwargs)
    if was_training:
        model.train()
    response = out[:, ids.shape[1]:]
    is_eos = response == tokenizer.eos_token_id
    # keep tokens up to and including the first EOS
    after_eos = (is_eos.cumsum(dim=1) - is_eos.long()) > 0
    rmask = (~after_eos).long()
    response = torch.where(rmask.bool(), response, torch.full_like(response, tokenizer.pad_token_id))
    texts = tokenizer.batch_decode(torch.where(is_eos, tokenizer.pad_token_id, response),
                                   skip_special_tokens=True)
    return Generation(ids, mask, response, rmask, texts)


@torch.no_grad()
def generate_groups(
    model, tokenizer, prompts: Sequence[str], group_size: int, max_new_tokens: int,
    temperature: float = 1.0, top_p: float = 1.0,
) -> Generation:
    """`group_size` sampled responses per prompt, prefilling each prompt once.

    GRPO samples G responses of the same prompt: `generate` with repeated
    prompts runs the prompt through the model G times. Here each distinct
    prompt is prefilled once, its KV cache is repeated G times, and decoding
    continues with the same HF model forward (sampling with temperature /
    top-p, stop at EOS). With prompts as long as responses this halves the
    generation FLOPs. Output rows are prompt-major: prompt i's responses are
    rows i*G .. i*G+G-1.
    """
    device = next(model.parameters()).device
    ids, mask = encode_prompts(tokenizer, prompts, device)
    was_training = model.training
    model.eval()
    pos = (mask.cumsum(dim=1) - 1).clamp(min=0)
    out = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True)
    cache = _cache_of(out)
    if group_size > 1:
        cache.batch_repeat_interleave(group_size)
    logits = out.logits[:, -1, :].float().repeat_interleave(group_size, dim=0)
    p_ids = ids.repeat_interleave(group_size, dim=0)
    p_mask = mask.repeat_interleave(group_size, dim=0)
    next_pos = pos[:, -1:].repeat_interleave(group_size, dim=0) + 1
    tokens, rmask = decode_cached(model, cache, logits, p_mask, next_pos, max_new_tokens,
                                  tokenizer.eos_token_id, tokenizer.pad_token_id,
                                  lambda lg: _sample(lg, temperature, top_p))
    if was_training:
        model.train()
    texts = decode_texts(tokenizer, tokens, rmask)
    return Generation(p_ids, p_mask, tokens, rmask, texts)


@torch.no_grad()
def decode_cached(model, cache, logits: torch.Tensor, p_mask: torch.Tensor,
                  next_pos: torch.Tensor, max_new_tokens: int, eos: int, pad: int,
                  pick) -> tuple[torch.Tensor, torch.Tensor]:
    """The decoding loop after a prefill: one token per row per step, stop at EOS.

    `logits`: (n, vocab) of the last prompt position; `cache`: the prefilled KV
    cache (already repeated per response); `next_pos`: position ids of the first
    response token (any shape the model takes, e.g. 3 x n x 1 for M-RoPE);
    `pick(logits) -> tokens`: sampling, greedy, or sampling with tokens blocked.
    Returns (tokens, mask): the mask covers tokens up to and including the
    first EOS, and tokens after it are `pad`.
    """
    n = logits.shape[0]
    device = logits.device
    cache_kw = _cache_kwarg(model)
    tokens = torch.full((n, max_new_tokens), pad, dtype=torch.long, device=device)
    done = torch.zeros(n, dtype=torch.bool, device=device)
    attn = p_mask
    for t in range(max_new_tokens):
        nxt = pick(logits)
        nxt = torch.where(done, torch.full_like(nxt, pad), nxt)
        tokens[:, t] = nxt
        done = done | (nxt == eos)
        if bool(done.all()) or t == max_new_tokens - 1:
            tokens = tokens[:, : t + 1]
            break
        attn = torch.cat([attn, torch.ones((n, 1), dtype=attn.dtype, device=device)], dim=1)
        out = model(input_ids=nxt.unsqueeze(1), attention_mask=attn, position_ids=next_pos,
                    use_cache=True, **{cache_kw: cache})
        cache = _cache_of(out)
        logits = out.logits[:, -1, :].float()
        next_pos = next_pos + 1
    is_eos = tokens == eos
    rmask = (~((is_eos.cumsum(dim=1) - is_eos.long()) > 0)).long()
    return torch.where(rmask.bool(), tokens, torch.full_like(tokens, pad)), rmask


def decode_texts(tokenizer, tokens: torch.Tensor, rmask: torch.Tensor) -> list[str]:
    """Response texts without the EOS token and padding."""
    is_eos = tokens == tokenizer.eos_token_id
    return tokenizer.batch_decode(torch.where(is_eos, tokenizer.pad_token_id, tokens),
                                  skip_special_tokens=True)


def _cache_kwarg(model) -> str:
    """`cache` (transformers >= 5.2x) or `past_key_values` (older releases)."""
    import inspect

    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _cache_of(out):
    cache = out.get("cache") if hasattr(out, "get") else None
    return cache if cache is not None else out.past_key_values


def _sample(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """One token per row from softmax(logits / temperature), nucleus-truncated at top_p."""
    probs = torch.softmax(logits / temperature, dim=-1)
    if top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        keep = (sorted_p.cumsum(dim=-1) - sorted_p) < top_p  # always keeps the top token
        sorted_p = sorted_p * keep
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
    return torch.multinomial(probs, 1).squeeze(1)


def concat_generations(parts: list[Generation], pad_id: int) -> Generation:
    """Stack generations of different widths: prompts re-padded on the left, responses on the right."""
    def cat(tensors: list[torch.Tensor], left: bool) -> torch.Tensor:
        width = max(t.shape[1] for t in tensors)
        padded = []
        for t in tensors:
            extra = t.new_full((t.shape[0], width - t.shape[1]), pad_id if t.dtype == torch.long else 0)
            padded.append(torch.cat([extra, t] if left else [t, extra], dim=1))
        return torch.cat(padded)

    def cat_mask(tensors: list[torch.Tensor], left: bool) -> torch.Tensor:
        width = max(t.shape[1] for t in tensors)
        out = []
        for t in tensors:
            extra = t.new_zeros((t.shape[0], width - t.shape[1]))
            out.append(torch.cat([extra, t] if left else [t, extra], dim=1))
        return torch.cat(out)

    return Generation(
        cat([p.prompt_ids for p in parts], True), cat_mask([p.prompt_mask for p in parts], True),
        cat([p.response_ids for p in parts], False), cat_mask([p.response_mask for p in parts], False),
        [t for p in parts for t in p.texts],
    )


def response_logprobs(
    model, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
    response_ids: torch.Tensor, response_mask: torch.Tensor, temperature: float = 1.0,
) -> torch.Tensor:
    """(B, R) log-probabilities of each response token given prompt and earlier tokens.

    Position ids follow the attention mask, as in `generate` with left padding,
    so training sees exactly the positions the sampler saw.
    """
    input_ids = torch.cat([prompt_ids, response_ids], dim=1)
    attn = torch.cat([prompt_mask, response_mask], dim=1)
    position_ids = (attn.cumsum(dim=1) - 1).clamp(min=0)
    r = response_ids.shape[1]
    logits = model(input_ids=input_ids, attention_mask=attn, position_ids=position_ids,
                   logits_to_keep=r + 1, use_cache=False).logits[:, :-1, :]
    logits = logits.float() / temperature
    logp = torch.log_softmax(logits, dim=-1)
    return logp.gather(-1, response_ids.unsqueeze(-1)).squeeze(-1)
