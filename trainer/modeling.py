"""Models and tokenizers: a tiny character-level model built from a transformers
config, or any local `AutoModelForCausalLM`; device and dtype auto-detection.

>>> tok = char_tokenizer()
>>> ids = tok("add:1+2=")["input_ids"]
>>> tok.decode(ids)
'add:1+2='
>>> tok.decode(tok("\\\\boxed{3}")["input_ids"]) == "\\\\boxed{3}" and len(tok("\\\\boxed{3}")["input_ids"])
3
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

# The answer tag is one token, so a tagged answer costs len(answer) + 2 tokens.
MULTI_CHAR_TOKENS = ("\\boxed{",)
DEFAULT_CHARS = (
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    " +-*/=<>(),.:;?!'\"{}[]#_|^%$&@~`\\\n"
)
PAD, EOS, BOS, UNK = "<pad>", "<eos>", "<bos>", "<unk>"


def char_tokenizer(chars: str = DEFAULT_CHARS, extra_tokens: tuple[str, ...] = MULTI_CHAR_TOKENS):
    """A `PreTrainedTokenizerFast` with one token per character (plus `extra_tokens`).

    Saved with `save_pretrained`, it loads back with `AutoTokenizer.from_pretrained`.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = [PAD, EOS, BOS, UNK]
    vocab = {t: i for i, t in enumerate([*specials, *extra_tokens, *dict.fromkeys(chars)])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    alternatives = "|".join(_regex_escape(t) for t in extra_tokens)
    pattern = f"{alternatives}|[\\s\\S]" if alternatives else "[\\s\\S]"
    # Split into multi-char tokens or single characters (newlines included).
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(pattern), behavior="isolated")
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token=PAD, eos_token=EOS, bos_token=BOS, unk_token=UNK,
        padding_side="left", clean_up_tokenization_spaces=False,
    )
    return fast


def _regex_escape(s: str) -> str:
    return "".join("\\" + c if not c.isalnum() else c for c in s)


@dataclass
class TinyModelSpec:
    """Shape of a tiny Qwen2-style model built from a config (no download)."""

    hidden_size: int = 128
    num_layers: int = 3
    num_heads: int = 4
    intermediate_size: int = 384
    max_positions: int = 64


def build_tiny_model(tokenizer, spec: TinyModelSpec | None = None, seed: int = 0):
    """A randomly initialised Qwen2 causal LM sized by `spec` for `tokenizer`."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    spec = spec or TinyModelSpec()
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_heads,
        max_position_embeddings=spec.max_positions,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


def load_pretrained(path: str | os.PathLike, device: torch.device | None = None, dtype=None):
    """Load a local `AutoModelForCausalLM` + tokenizer (never touches the network)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"model path {str(path)!r} is not a directory with a saved model")
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=dtype)
    if device is not None:
        model.to(device)
    return model, tokenizer


def auto_device(prefer: str = "auto") -> tuple[torch.device, torch.dtype]:
    """(device, dtype): CUDA + bf16 when a GPU is present (and allowed), else CPU + fp32."""
    if prefer not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {prefer!r}")
    if prefer != "cpu" and torch.cuda.is_available():
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.device("cuda"), dtype
    if prefer == "cuda":
        raise RuntimeError("device = 'cuda' was requested but torch sees no GPU")
    return torch.device("cpu"), torch.float32
