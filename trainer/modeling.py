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

    Ids 0-3 are <pad>, <eos>, <bos>, <unk>, then `extra_tokens`, then `chars`:

    >>> tok = char_tokenizer(chars="ab+=")
    >>> len(tok), tok("ab=")["input_ids"], tok("a?")["input_ids"]
    (9, [5, 6, 8], [5, 3])
    >>> tok.convert_ids_to_tokens([4]), tok.pad_token_id, tok.eos_token_id, tok.padding_side
    (['\\\\boxed{'], 0, 1, 'left')
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
    """Shape of a tiny Qwen2-style model built from a config (no download).

    >>> TinyModelSpec()
    TinyModelSpec(hidden_size=128, num_layers=3, num_heads=4, intermediate_size=384, max_positions=64)
    >>> model = build_tiny_model(char_tokenizer(), TinyModelSpec(hidden_size=16, num_layers=2,
    ...                                                          num_heads=2, intermediate_size=32))
    >>> model.config.num_hidden_layers, model.config.hidden_size, model.config.num_attention_heads
    (2, 16, 2)
    """

    hidden_size: int = 128
    num_layers: int = 3
    num_heads: int = 4
    intermediate_size: int = 384
    max_positions: int = 64


def build_tiny_model(tokenizer, spec: TinyModelSpec | None = None, seed: int = 0):
    """A randomly initialised Qwen2 causal LM sized by `spec` for `tokenizer`.

    >>> tok = char_tokenizer()
    >>> spec = TinyModelSpec(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32)
    >>> model = build_tiny_model(tok, spec)
    >>> len(tok), sum(p.numel() for p in model.parameters())
    (101, 4272)
    >>> model(torch.tensor([[5, 6, 7]])).logits.shape
    torch.Size([1, 3, 101])
    >>> again = build_tiny_model(tok, spec)  # same seed, same weights
    >>> torch.equal(model.lm_head.weight, again.lm_head.weight)
    True
    """
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
    """Load a local `AutoModelForCausalLM` (or, when its config has a vision part, an
    `AutoModelForImageTextToText`) + tokenizer (never touches the network).

    >>> import tempfile
    >>> tok = char_tokenizer()
    >>> spec = TinyModelSpec(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32)
    >>> model = build_tiny_model(tok, spec)
    >>> path = tempfile.mkdtemp()
    >>> model.save_pretrained(path)
    >>> _ = tok.save_pretrained(path)
    >>> loaded, loaded_tok = load_pretrained(path)
    >>> type(loaded).__name__, sum(p.numel() for p in loaded.parameters()), loaded_tok.padding_side
    ('Qwen2ForCausalLM', 4272, 'left')
    >>> torch.equal(loaded.lm_head.weight, model.lm_head.weight)
    True
    >>> load_pretrained(path + "/missing")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    FileNotFoundError: model path '.../missing' is not a directory with a saved model
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"model path {str(path)!r} is not a directory with a saved model")
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(path, local_files_only=True)
    if getattr(config, "vision_config", None) is not None:  # a vision-language model (trainer.vision)
        from transformers import AutoModelForImageTextToText as auto
    else:
        auto = AutoModelForCausalLM
    model = auto.from_pretrained(path, local_files_only=True, dtype=dtype)
    if device is not None:
        model.to(device)
    return model, tokenizer


def auto_device(prefer: str = "auto") -> tuple[torch.device, torch.dtype]:
    """(device, dtype): CUDA + bf16 when a GPU is present (and allowed), else CPU + fp32.

    >>> auto_device("cpu")
    (device(type='cpu'), torch.float32)
    >>> auto_device("tpu")
    Traceback (most recent call last):
    ...
    ValueError: device must be auto, cpu or cuda, got 'tpu'
    """
    if prefer not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {prefer!r}")
    if prefer != "cpu" and torch.cuda.is_available():
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.device("cuda"), dtype
    if prefer == "cuda":
        raise RuntimeError("device = 'cuda' was requested but torch sees no GPU")
    return torch.device("cpu"), torch.float32


def quiet_transformers() -> None:
    """Silence transformers' info logging and progress bars (the jobs print their own)."""
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
