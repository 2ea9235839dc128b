"""Vision-language models for the trainer: a tiny Qwen2-VL built from a config, image
inputs decoded once per sha256, and batches of image prompts as model inputs.

A Sample row with images (``images`` = [{path, sha256}], curate.schema) becomes
one prompt row whose text starts with each image's placeholder
(``<|vision_start|>`` + one ``<|image_pad|>`` per merged patch +
``<|vision_end|>``) followed by the prompt. Pixels are turned into the flat
patches the vision tower reads (``pixel_values`` + ``image_grid_thw``) here,
with numpy, exactly as transformers' ``Qwen2VLImageProcessorPil`` does (no
torchvision, no processor files). A batch keeps each *distinct* image once
(`ImageBatch`); rows point at them, so a group of G responses to one image
prompt, or the update over them, runs the vision tower once per image.

The Qwen2-VL family (``qwen2_vl`` and ``qwen2_5_vl``: the same image tokens,
patch layout and rope index for images; Qwen2.5-VL's tower adds window
attention and an MLP merger) and the LLaVA family (``llava``: a SigLIP or CLIP
tower on a fixed-size image, one ``<|image_pad|>`` per patch here, 1-D positions)
are supported; other vision-language families raise a clear error until they
get their adapter.

>>> tok = vision_tokenizer()
>>> model = build_tiny_vlm(tok, TinyVLMSpec(hidden_size=32, num_layers=1, num_heads=2,
...                                         intermediate_size=64, vision_dim=16))
>>> type(model).__name__, model.config.image_token_id == tok.convert_tokens_to_ids("<|image_pad|>")
('Qwen2VLForConditionalGeneration', True)
>>> import numpy as np, tempfile
>>> from curate.synthetic_vision import write_images
>>> refs = write_images([np.zeros((32, 32, 3), np.uint8)], tempfile.mkdtemp())
>>> inputs = VisionInputs(model, tok)
>>> batch = inputs.encode(["bar:tallest=", "add:1+1="], [refs, []], ["s0", "s1"])
>>> batch.input_ids.shape, batch.images.grids.tolist(), batch.images.row_images
(torch.Size([2, 30]), [[1, 8, 8]], [[0], []])
>>> int((batch.input_ids[0] == model.config.image_token_id).sum())  # 8x8 patches, 2x2 merged
16
"""

from __future__ import annotations

import hashlib
import io
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from curate.errors import DataError
from trainer.modeling import DEFAULT_CHARS, MULTI_CHAR_TOKENS, char_tokenizer

VISION_START, VISION_END, IMAGE_PAD, VIDEO_PAD = (
    "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")
VISION_TOKENS = (VISION_START, VISION_END, IMAGE_PAD, VIDEO_PAD)
# CLIP normalisation, as Qwen2-VL's image processor uses
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
SUPPORTED = ("qwen2_vl", "qwen2_5_vl", "llava")
MROPE = ("qwen2_vl", "qwen2_5_vl")  # the families with Qwen2-VL's multimodal rope index


class ImageError(DataError):
    """An image of a sample that cannot be used; names the sample id and the path.

    >>> str(ImageError("abc", "/data/x.png", "file not found"))
    "sample 'abc': image '/data/x.png': file not found"
    """

    def __init__(self, sample_id: str | None, path: str | None, reason: str) -> None:
        self.sample_id, self.path, self.reason = sample_id, path, reason
        super().__init__(f"sample {sample_id!r}: image {path!r}: {reason}")


# ------------------------------------------------------------------ model
def vision_tokenizer(chars: str = DEFAULT_CHARS):
    """The character tokenizer (`trainer.modeling.char_tokenizer`) plus the vision tokens.

    >>> tok = vision_tokenizer()
    >>> tok.convert_ids_to_tokens(tok("<|vision_start|><|image_pad|>ab")["input_ids"])
    ['<|vision_start|>', '<|image_pad|>', 'a', 'b']
    """
    return char_tokenizer(chars, extra_tokens=MULTI_CHAR_TOKENS + VISION_TOKENS)


@dataclass
class TinyVLMSpec:
    """Shape of a tiny Qwen2-VL built from a config (no download).

    The language model's head dimension (hidden_size / num_heads) must be even;
    its rotary half is split over (time, height, width) like Qwen2-VL's
    ``mrope_section`` [16, 24, 24] for 128. A 32x32 image with ``patch_size`` 4
    is 8x8 patches, merged 2x2 into 16 image tokens.

    >>> TinyVLMSpec().patch_size, mrope_section(32)
    (4, [4, 6, 6])
    """

    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 2
    intermediate_size: int = 192
    max_positions: int = 256
    vision_depth: int = 1
    vision_dim: int = 32
    vision_heads: int = 2
    patch_size: int = 4
    merge_size: int = 2
    family: str = "qwen2_vl"  # or "qwen2_5_vl", "llava" (a SigLIP tower)
    image_size: int = 32  # llava: the tower's fixed input size (images are resized to it)


def mrope_section(head_dim: int) -> list[int]:
    """(time, height, width) split of the rotary half of `head_dim` (sums to head_dim / 2)."""
    half = head_dim // 2
    hw = 3 * half // 8
    return [half - 2 * hw, hw, hw]


def build_tiny_vlm(tokenizer, spec: TinyVLMSpec | None = None, seed: int = 0):
    """A randomly initialised `Qwen2VLForConditionalGeneration` sized by `spec` for `tokenizer`.

    `tokenizer` must hold the `VISION_TOKENS` (see `vision_tokenizer`).
    `spec.family` picks Qwen2-VL (default), Qwen2.5-VL (window attention in
    the tower: windows of 2x2 merged tokens, the first block full attention) or
    LLaVA with a SigLIP tower over `image_size` pixels in patches of
    patch_size x merge_size (as many image tokens as Qwen2-VL's after its merge)
    and a Qwen2 language model.

    >>> tok = vision_tokenizer()
    >>> m = build_tiny_vlm(tok)
    >>> sum(p.numel() for p in m.parameters()), m.config.text_config.rope_parameters["mrope_section"]
    (150368, [4, 6, 6])
    >>> type(build_tiny_vlm(tok, TinyVLMSpec(family="qwen2_5_vl"))).__name__
    'Qwen2_5_VLForConditionalGeneration'
    >>> llava = build_tiny_vlm(tok, TinyVLMSpec(family="llava"))
    >>> type(llava).__name__, llava.config.vision_config.model_type
    ('LlavaForConditionalGeneration', 'siglip_vision_model')
    """
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
    )

    spec = spec or TinyVLMSpec()
    if spec.family not in SUPPORTED:
        raise ValueError(f"unknown family {spec.family!r}; expected one of {SUPPORTED}")
    ids = tokenizer.convert_tokens_to_ids(list(VISION_TOKENS))
    if tokenizer.unk_token_id in ids:
        raise ValueError(f"the tokenizer lacks the vision tokens {VISION_TOKENS}; use vision_tokenizer()")
    head_dim = spec.hidden_size // spec.num_heads
    if head_dim % 2 or spec.hidden_size % spec.num_heads:
        raise ValueError(f"hidden_size / num_heads must be an even integer, got {spec.hidden_size} / "
                         f"{spec.num_heads}")
    if spec.family == "llava":
        return _build_tiny_llava(tokenizer, spec, ids, seed)
    if spec.family == "qwen2_5_vl":
        vision = {"depth": spec.vision_depth, "hidden_size": spec.vision_dim,
                  "intermediate_size": 2 * spec.vision_dim, "out_hidden_size": spec.hidden_size,
                  "num_heads": spec.vision_heads, "patch_size": spec.patch_size,
                  "spatial_merge_size": spec.merge_size, "temporal_patch_size": 2,
                  # windows of 2x2 merged tokens (in pixels), block 0 attends over the whole image
                  "window_size": 2 * spec.merge_size * spec.patch_size, "fullatt_block_indexes": [0]}
        config_cls, model_cls = Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
    else:
        vision = {"depth": spec.vision_depth, "embed_dim": spec.vision_dim,
                  "hidden_size": spec.hidden_size, "num_heads": spec.vision_heads, "mlp_ratio": 2,
                  "patch_size": spec.patch_size, "spatial_merge_size": spec.merge_size,
                  "temporal_patch_size": 2}
        config_cls, model_cls = Qwen2VLConfig, Qwen2VLForConditionalGeneration
    config = config_cls(
        text_config={
            "vocab_size": len(tokenizer), "hidden_size": spec.hidden_size,
            "intermediate_size": spec.intermediate_size, "num_hidden_layers": spec.num_layers,
            "num_attention_heads": spec.num_heads, "num_key_value_heads": spec.num_heads,
            "max_position_embeddings": spec.max_positions,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0,
                                "mrope_section": mrope_section(head_dim)},
            "pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id,
            "bos_token_id": tokenizer.bos_token_id,
        },
        vision_config=vision,
        vision_start_token_id=ids[0], vision_end_token_id=ids[1], image_token_id=ids[2],
        video_token_id=ids[3], tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = model_cls(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


def _build_tiny_llava(tokenizer, spec: TinyVLMSpec, ids: list[int], seed: int):
    from transformers import LlavaConfig, LlavaForConditionalGeneration

    config = LlavaConfig(
        vision_config={"model_type": "siglip_vision_model", "hidden_size": spec.vision_dim,
                       "intermediate_size": 2 * spec.vision_dim,
                       "num_hidden_layers": spec.vision_depth,
                       "num_attention_heads": spec.vision_heads, "image_size": spec.image_size,
                       "patch_size": spec.patch_size * spec.merge_size},
        text_config={"model_type": "qwen2", "vocab_size": len(tokenizer),
                     "hidden_size": spec.hidden_size, "intermediate_size": spec.intermediate_size,
                     "num_hidden_layers": spec.num_layers, "num_attention_heads": spec.num_heads,
                     "num_key_value_heads": spec.num_heads,
                     "max_position_embeddings": spec.max_positions,
                     "pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id,
                     "bos_token_id": tokenizer.bos_token_id},
        image_token_id=ids[2], vision_feature_select_strategy="full", vision_feature_layer=-1,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


def family(model) -> str:
    """The model's vision-language family (its config's model_type)."""
    return str(getattr(model.config, "model_type", ""))


def is_vision_model(model) -> bool:
    """Whether `model` is a vision-language model (its config has a vision part)."""
    return getattr(model.config, "vision_config", None) is not None


def _check_supported(model) -> None:
    kind = getattr(model.config, "model_type", None)
    if kind not in SUPPORTED:
        raise NotImplementedError(f"vision-language model type {kind!r} has no adapter yet; "
                                  f"supported: {', '.join(SUPPORTED)}")


# ----------------------------------------------------------------- pixels
@dataclass(frozen=True)
class ImageProcessor:
    """Pixels -> (flat patches, grid) as the vision tower reads them (Qwen2-VL layout).

    Images whose sides are not multiples of patch_size x merge_size (or whose
    area is outside [min_pixels, max_pixels]) are resized first, bicubic, to
    the size Qwen2-VL's ``smart_resize`` picks.

    >>> p = ImageProcessor(patch_size=4)
    >>> patches, grid = p(np.zeros((32, 32, 3), np.uint8))
    >>> patches.shape, grid
    ((64, 96), (1, 8, 8))
    """

    patch_size: int = 14
    merge_size: int = 2
    temporal_patch_size: int = 2
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD
    min_pixels: int = 8 * 8
    max_pixels: int = 28 * 28 * 1280
    # LLaVA-style towers: every image resized to size x size, one token per patch
    fixed_size: int | None = None

    @classmethod
    def for_model(cls, model, max_pixels: int | None = None) -> ImageProcessor:
        """The processor of `model`'s tower; by default an image gets at most 1280 tokens
        (Qwen2-VL's default budget: 28 x 28 x 1280 pixels for 14-pixel patches).
        A LLaVA tower reads a fixed size (SigLIP's normalisation: mean = std = 0.5)."""
        vc = model.config.vision_config
        if family(model) == "llava":
            mean = tuple(getattr(vc, "image_mean", None) or (0.5, 0.5, 0.5))
            return cls(patch_size=int(vc.patch_size), merge_size=1, temporal_patch_size=1,
                       mean=mean, std=(0.5, 0.5, 0.5), fixed_size=int(vc.image_size))
        p, m = int(vc.patch_size), int(vc.spatial_merge_size)
        return cls(patch_size=p, merge_size=m, temporal_patch_size=int(vc.temporal_patch_size),
                   max_pixels=max_pixels or (p * m) ** 2 * 1280)

    @property
    def factor(self) -> int:
        return self.patch_size * self.merge_size

    def tokens(self, grid: tuple[int, int, int]) -> int:
        """Image tokens the language model sees for `grid` (after the merge)."""
        return grid[0] * grid[1] * grid[2] // self.merge_size**2

    def __call__(self, rgb: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int]]:
        if self.fixed_size is not None:
            return self._fixed(rgb)
        h, w = rgb.shape[:2]
        f = self.factor
        if h % f or w % f or not self.min_pixels <= h * w <= self.max_pixels:
            from PIL import Image
            from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

            nh, nw = smart_resize(h, w, factor=f, min_pixels=self.min_pixels, max_pixels=self.max_pixels)
            rgb = np.asarray(Image.fromarray(rgb).resize((nw, nh), Image.Resampling.BICUBIC))
            h, w = nh, nw
        x = (rgb.astype(np.float64) * (1 / 255)).astype(np.float32)  # as transformers rescales
        x = (x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        x = x.transpose(2, 0, 1)  # (C, H, W)
        p, m, t = self.patch_size, self.merge_size, self.temporal_patch_size
        gh, gw = h // p, w // p
        x = x.reshape(3, gh // m, m, p, gw // m, m, p).transpose(1, 4, 2, 5, 0, 3, 6)
        x = np.broadcast_to(x[:, :, :, :, :, None], (*x.shape[:5], t, p, p))
        return np.ascontiguousarray(x.reshape(gh * gw, 3 * t * p * p)), (1, gh, gw)

    def _fixed(self, rgb: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int]]:
        """Resized to fixed_size (bicubic), normalised, cut into (gh * gw, 3 * p * p) patches
        (row-major, channels first) so an `ImageBatch` holds it like any other image;
        `to_images` puts the pixels back together for the tower."""
        s, p = self.fixed_size, self.patch_size
        if rgb.shape[:2] != (s, s):
            from PIL import Image

            rgb = np.asarray(Image.fromarray(rgb).resize((s, s), Image.Resampling.BICUBIC))
        x = (rgb.astype(np.float64) * (1 / 255)).astype(np.float32)
        x = ((x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)).transpose(2, 0, 1)
        g = s // p
        x = x.reshape(3, g, p, g, p).transpose(1, 3, 0, 2, 4)
        return np.ascontiguousarray(x.reshape(g * g, 3 * p * p)), (1, g, g)


def to_images(pixel_values: torch.Tensor, grids: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(n, 3, H, W) pixels of fixed-size images stored as patches by `ImageProcessor._fixed`."""
    n, g = len(grids), int(grids[0, 1]) if len(grids) else 0
    x = pixel_values.view(n, g, g, 3, patch_size, patch_size).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(n, 3, g * patch_size, g * patch_size)


class ImageCache:
    """Decoded images keyed by sha256 (by path when a row has no sha256): each file is
    read, checked and turned into patches once; least recently used entries go
    first beyond `max_items`.

    >>> import tempfile
    >>> from curate.synthetic_vision import write_images
    >>> (ref,) = write_images([np.zeros((32, 32, 3), np.uint8)], tempfile.mkdtemp())
    >>> cache = ImageCache(ImageProcessor(patch_size=4))
    >>> a = cache.get(ref, "s0"); b = cache.get(dict(ref), "s1")
    >>> a is b, cache.decoded
    (True, 1)
    >>> cache.get({"path": "/no/such.png", "sha256": None}, "s2")
    Traceback (most recent call last):
    ...
    trainer.vision.ImageError: sample 's2': image '/no/such.png': file not found
    """

    def __init__(self, processor: ImageProcessor, max_items: int = 4096, verify_sha256: bool = True):
        self.processor = processor
        self.max_items = max_items
        self.verify_sha256 = verify_sha256
        self._items: OrderedDict[str, tuple[torch.Tensor, tuple[int, int, int]]] = OrderedDict()
        self.decoded = 0

    def get(self, ref: dict, sample_id: str | None = None) -> tuple[torch.Tensor, tuple[int, int, int]]:
        """(patches, grid) of the image `ref` = {path, sha256}; ImageError names the sample."""
        path, digest = ref.get("path"), ref.get("sha256")
        key = digest or f"path:{path}"
        hit = self._items.get(key)
        if hit is not None:
            self._items.move_to_end(key)
            return hit
        value = self._decode(path, digest, sample_id)
        self._items[key] = value
        self.decoded += 1
        while len(self._items) > self.max_items:
            self._items.popitem(last=False)
        return value

    def _decode(self, path: str | None, digest: str | None, sample_id: str | None):
        from PIL import Image, UnidentifiedImageError

        if not path:
            raise ImageError(sample_id, path, "no path")
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            raise ImageError(sample_id, path, "file not found") from None
        except OSError as exc:
            raise ImageError(sample_id, path, f"cannot be read ({exc.strerror or exc})") from None
        if self.verify_sha256 and digest and hashlib.sha256(data).hexdigest() != digest:
            raise ImageError(sample_id, path, f"content does not match its sha256 {digest[:12]}...")
        try:
            with Image.open(io.BytesIO(data)) as im:
                rgb = np.asarray(im.convert("RGB"))
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise ImageError(sample_id, path, f"does not decode as an image ({exc})") from None
        patches, grid = self.processor(rgb)
        return torch.from_numpy(patches), grid


# ------------------------------------------------------------------ batches
@dataclass
class ImageBatch:
    """The distinct images of a batch, once each, and which rows use them.

    `pixel_values` (sum of patches, patch dim) and `grids` (n, 3) hold each
    distinct image once; `row_images[i]` lists the images of row i, in prompt
    order, as indices into them.

    >>> b = ImageBatch(torch.zeros(8, 2), torch.tensor([[1, 2, 2], [1, 2, 2]]), [[0], [1], []], ["a", "b"])
    >>> b.repeat_rows(2).row_images, b.select_rows([2, 0]).row_images, b.row_grids([1, 0]).tolist()
    ([[0], [0], [1], [1], [], []], [[], [0]], [[1, 2, 2], [1, 2, 2]])
    """

    pixel_values: torch.Tensor
    grids: torch.Tensor
    row_images: list[list[int]]
    keys: list[str] = field(default_factory=list)

    @property
    def any(self) -> bool:
        return any(self.row_images)

    def repeat_rows(self, n: int) -> ImageBatch:
        """Each row `n` times in a row (prompt-major, like a GRPO group); images stay shared."""
        rows = [r for r in self.row_images for _ in range(n)]
        return ImageBatch(self.pixel_values, self.grids, rows, self.keys)

    def select_rows(self, idx: Sequence[int]) -> ImageBatch:
        """The rows `idx` (distinct images kept whole; unused ones cost no tower time
        once `used` is applied)."""
        return ImageBatch(self.pixel_values, self.grids, [self.row_images[i] for i in idx], self.keys)

    def used(self) -> ImageBatch:
        """The same rows with only the distinct images some row uses."""
        keep = sorted({j for r in self.row_images for j in r})
        if len(keep) == len(self.grids):
            return self
        new = {j: k for k, j in enumerate(keep)}
        sizes = self.grids.prod(-1).tolist()
        starts = np.concatenate([[0], np.cumsum(sizes)]).tolist()
        pv = torch.cat([self.pixel_values[starts[j]:starts[j + 1]] for j in keep]) if keep else \
            self.pixel_values[:0]
        return ImageBatch(pv, self.grids[keep], [[new[j] for j in r] for r in self.row_images],
                          [self.keys[j] for j in keep] if self.keys else [])

    def row_grids(self, rows: Sequence[int] | None = None) -> torch.Tensor:
        """(images in row order, 3): the grid of every image placeholder, as the rope index reads them."""
        rows = range(len(self.row_images)) if rows is None else rows
        idx = [j for i in rows for j in self.row_images[i]]
        return self.grids[idx] if idx else self.grids[:0]

    def to(self, device) -> ImageBatch:
        return ImageBatch(self.pixel_values.to(device), self.grids.to(device), self.row_images, self.keys)

    @staticmethod
    def concat(parts: Sequence[ImageBatch]) -> ImageBatch:
        """Rows of every part in order; distinct images de-duplicated by key."""
        pv, grids, keys, rows, where = [], [], [], [], {}
        for part in parts:
            sizes = part.grids.prod(-1).tolist()
            starts = np.concatenate([[0], np.cumsum(sizes)]).tolist()
            local = {}
            for j in range(len(part.grids)):
                key = part.keys[j] if part.keys else f"{id(part)}:{j}"
                if key not in where:
                    where[key] = len(grids)
                    pv.append(part.pixel_values[starts[j]:starts[j + 1]])
                    grids.append(part.grids[j])
                    keys.append(key)
                local[j] = where[key]
            rows += [[local[j] for j in r] for r in part.row_images]
        d = parts[0].pixel_values
        return ImageBatch(torch.cat(pv) if pv else d[:0], torch.stack(grids) if grids else
                          parts[0].grids[:0], rows, keys)


@dataclass
class VisionPrompts:
    """A batch of image prompts as model inputs (left padded) with their images.

    `rows` are the indices of the input rows kept; `errors` the `ImageError`
    of each row left out (with ``on_error="skip"``).
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    images: ImageBatch
    rows: list[int]
    errors: list[ImageError] = field(default_factory=list)


class VisionInputs:
    """Sample rows (prompt text + image refs) -> inputs of one vision-language model.

    Holds the model's `ImageProcessor` and an `ImageCache`, so every image is
    decoded once however often it is drawn. `blocked_ids` are the vision
    special tokens, which sampling never emits (a sampled ``<|image_pad|>``
    would break the rope index) and log-probs exclude the same way.
    """

    def __init__(self, model, tokenizer, max_images: int = 4096, verify_sha256: bool = True,
                 max_pixels: int | None = None):
        _check_supported(model)
        cfg = model.config
        self.tokenizer = tokenizer
        self.processor = ImageProcessor.for_model(model, max_pixels)
        self.cache = ImageCache(self.processor, max_images, verify_sha256)
        self.image_token_id = int(cfg.image_token_id)
        self.mrope = family(model) in MROPE
        # every vision special token the tokenizer has: never sampled, excluded from log-probs
        self.blocked_ids = sorted({i for i in tokenizer.convert_tokens_to_ids(list(VISION_TOKENS))
                                   if i != tokenizer.unk_token_id} | {self.image_token_id})
        if self.mrope:
            tok_ids = tokenizer.convert_tokens_to_ids([VISION_START, VISION_END, IMAGE_PAD])
            want = [int(cfg.vision_start_token_id), int(cfg.vision_end_token_id), self.image_token_id]
        else:
            tok_ids, want = tokenizer.convert_tokens_to_ids([IMAGE_PAD]), [self.image_token_id]
        if tok_ids != want:
            raise ValueError("the tokenizer's vision tokens do not match the model config's ids")

    def prepare(
        self, prompts: Sequence[str], images: Sequence[Sequence[dict] | None],
        sample_ids: Sequence[str | None] | None = None, on_error: str = "raise",
    ) -> tuple[list[str], list[int], list[ImageError], ImageBatch]:
        """Decode each row's images (cached) and put their placeholders in front of its prompt.

        Returns (texts, rows kept, errors, images): `texts[k]` is row `rows[k]`'s
        prompt with one placeholder block per image, `images` holds each
        distinct image once. `on_error`: "raise" raises the first `ImageError`
        (naming the sample and the path); "skip" leaves that row out and reports
        it in `errors`. The SFT batches and `encode` both build on it.
        """
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        sample_ids = list(sample_ids) if sample_ids is not None else [None] * len(prompts)
        texts, rows, errors, row_images = [], [], [], []
        pv, grids, keys, where = [], [], [], {}
        for i, (prompt, refs) in enumerate(zip(prompts, images, strict=True)):
            try:
                decoded = [(ref, self.cache.get(ref, sample_ids[i])) for ref in (refs or [])]
            except ImageError as exc:
                if on_error == "raise":
                    raise
                errors.append(exc)
                continue
            head, mine = [], []
            for ref, (patches, grid) in decoded:
                key = ref.get("sha256") or f"path:{ref.get('path')}"
                if key not in where:
                    where[key] = len(grids)
                    pv.append(patches)
                    grids.append(grid)
                    keys.append(key)
                mine.append(where[key])
                pads = IMAGE_PAD * self.processor.tokens(grid)
                head.append(VISION_START + pads + VISION_END if self.mrope else pads)
            texts.append("".join(head) + prompt)
            rows.append(i)
            row_images.append(mine)
        batch = ImageBatch(
            torch.cat(pv) if pv else torch.zeros(0, 3 * self.processor.temporal_patch_size
                                                 * self.processor.patch_size**2),
            torch.tensor(grids, dtype=torch.long).reshape(-1, 3), row_images, keys)
        return texts, rows, errors, batch

    def encode(
        self, prompts: Sequence[str], images: Sequence[Sequence[dict] | None],
        sample_ids: Sequence[str] | None = None, device: torch.device | str | None = None,
        on_error: str = "raise",
    ) -> VisionPrompts:
        """Tokenize `prompts` with each row's images in front; decode the images (cached).

        `on_error`: "raise" raises the first `ImageError` (naming the sample and
        the path); "skip" leaves that row out and reports it in `errors`, the
        other rows are encoded exactly as they would be alone.
        """
        texts, rows, errors, batch = self.prepare(prompts, images, sample_ids, on_error)
        if not texts:
            raise errors[0]
        enc = self.tokenizer(texts, padding=True, return_tensors="pt", add_special_tokens=False)
        if self.tokenizer.padding_side != "left":
            raise ValueError("tokenizer.padding_side must be 'left' for generation")
        out = VisionPrompts(enc["input_ids"], enc["attention_mask"], batch, rows, errors)
        if device is not None:
            out = VisionPrompts(out.input_ids.to(device), out.attention_mask.to(device),
                                batch.to(device), rows, errors)
        return out


# ------------------------------------------------------------ model inputs
def image_features(model, images: ImageBatch) -> list[torch.Tensor]:
    """The vision tower's output per distinct image (one tower pass for the batch)."""
    if not len(images.grids):
        return []
    if family(model) == "llava":
        cfg = model.config
        pixels = to_images(images.pixel_values, images.grids, int(cfg.vision_config.patch_size))
        out = model.get_image_features(pixel_values=pixels.to(model.dtype),
                                       vision_feature_layer=cfg.vision_feature_layer,
                                       vision_feature_select_strategy=cfg.vision_feature_select_strategy)
        return [f.reshape(-1, f.shape[-1]) for f in out.pooler_output]
    out = model.get_image_features(images.pixel_values, image_grid_thw=images.grids)
    return list(out.pooler_output)


def embed_inputs(model, input_ids: torch.Tensor, images: ImageBatch,
                 features: list[torch.Tensor] | None = None) -> torch.Tensor:
    """Token embeddings with every image placeholder replaced by its image's features."""
    embeds = model.get_input_embeddings()(input_ids)
    if not images.any:
        return embeds
    feats = features if features is not None else image_features(model, images)
    rows = torch.cat([feats[j] for r in images.row_images for j in r]).to(embeds.dtype)
    mask = input_ids == model.config.image_token_id
    if int(mask.sum()) != rows.shape[0]:
        raise ValueError(f"{int(mask.sum())} image placeholders but {rows.shape[0]} image features")
    return embeds.masked_scatter(mask.unsqueeze(-1), rows)


def rope_positions(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                   images: ImageBatch) -> torch.Tensor:
    """(3, B, L) multimodal rotary positions: Qwen2-VL's rope index, vectorized.

    Text tokens count up on all three axes; the tokens of an image (h x w after
    the merge) sit at (start, start + row, start + col), and the text after it
    goes on from start + max(h, w). Padding gets 0. Equal to transformers'
    ``get_rope_index`` (tests/test_trainer_vision.py), without its Python loop
    over rows and tokens. A family without multimodal rope (LLaVA) gets plain
    (B, L) positions counted from the first real token.
    """
    mask = attention_mask.bool()
    if family(model) not in MROPE:
        return ((mask.long().cumsum(dim=1) - 1).clamp(min=0)) * mask.long()
    is_img = (input_ids == model.config.image_token_id) & mask
    text = mask & ~is_img
    text_before = text.long().cumsum(dim=1) - text.long()  # text tokens strictly before
    pos = (text_before).unsqueeze(0).repeat(3, 1, 1)
    if bool(is_img.any()):
        merge = int(model.config.vision_config.spatial_merge_size)
        grids = images.row_grids().to(input_ids.device)
        gh, gw = grids[:, 1] // merge, grids[:, 2] // merge
        prev = torch.zeros_like(is_img)
        prev[:, 1:] = is_img[:, :-1]
        starts = is_img & ~prev  # first token of each image block, blocks in row-major order
        b_row, b_col = torch.nonzero(starts, as_tuple=True)
        if len(b_row) != len(grids):
            raise ValueError(f"{len(b_row)} image blocks in the prompts but {len(grids)} images")
        adv = torch.maximum(gh, gw)
        bump = torch.zeros_like(input_ids)
        bump[b_row, b_col] = adv
        cum = bump.cumsum(dim=1)  # advances of the blocks that started at or before each token
        block = starts.long().cumsum(dim=1) - 1  # index of the block within its row
        first = torch.cumsum(starts.sum(dim=1), 0) - starts.sum(dim=1)  # row's first block, global
        glob = (first.unsqueeze(1) + block).clamp(min=0)
        own_adv, width = adv[glob.clamp(max=len(adv) - 1)], gw[glob.clamp(max=len(adv) - 1)]
        start_col = b_col[glob.clamp(max=len(adv) - 1)]
        offset = torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0) - start_col
        img_start = text_before + cum - own_adv
        text_pos = text_before + cum
        pos = torch.stack([
            torch.where(is_img, img_start, text_pos),
            torch.where(is_img, img_start + torch.div(offset, width, rounding_mode="floor"), text_pos),
            torch.where(is_img, img_start + offset % width, text_pos),
        ])
    return torch.where(mask.unsqueeze(0), pos, torch.zeros_like(pos))


def vision_logits(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, images: ImageBatch,
                  logits_to_keep: int = 0) -> torch.Tensor:
    """Logits of a plain forward over image prompts (left or right padded): the tower once
    per distinct image, placeholders filled with its features, multimodal rope positions.

    What SFT trains and what `vision_response_logprobs` scores; `logits_to_keep` > 0
    keeps only the last positions (as transformers does).
    """
    images = images.used().to(input_ids.device)
    pos = rope_positions(model, input_ids, attention_mask, images)
    embeds = embed_inputs(model, input_ids, images)
    return model(inputs_embeds=embeds, attention_mask=attention_mask, position_ids=pos,
                 logits_to_keep=logits_to_keep, use_cache=False).logits


def mm_token_type_ids(model, input_ids: torch.Tensor) -> torch.Tensor:
    """1 at image placeholders, 0 elsewhere (what transformers wants beside image_grid_thw)."""
    return (input_ids == model.config.image_token_id).int()



# ------------------------------------------------------------ TRL processor
# A chat template for TRL's conversational prompts: each {"type": "image"} part becomes one
# placeholder block (the processor expands the pad token to the image's token count)
CHAT_TEMPLATE = (
    "{% for m in messages %}{% if m['content'] is string %}{{ m['content'] }}{% else %}"
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}" + VISION_START + IMAGE_PAD
    + VISION_END + "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}"
    "{% endif %}{% endfor %}")


def trl_processor(model, tokenizer):
    """A transformers processor (``Qwen2VLProcessor``) for `model` and the char `tokenizer`,
    with a chat template: what TRL's `GRPOTrainer` wants as `processing_class` for a
    vision-language model. No processor files, no torchvision (the video
    processor, which needs it, is left out).

    >>> tok = vision_tokenizer()
    >>> proc = trl_processor(build_tiny_vlm(tok), tok)
    >>> text = proc.apply_chat_template([{"role": "user", "content": [{"type": "image"},
    ...                                   {"type": "text", "text": "num:red="}]}], tokenize=False)
    >>> text
    '<|vision_start|><|image_pad|><|vision_end|>num:red='
    >>> out = proc(text=[text], images=[np.zeros((32, 32, 3), np.uint8)], return_tensors="pt")
    >>> out["image_grid_thw"].tolist(), int((out["input_ids"] == tok.convert_tokens_to_ids(IMAGE_PAD)).sum())
    ([[1, 8, 8]], 16)
    """
    from transformers import Qwen2VLProcessor
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
    from transformers.processing_utils import ProcessorMixin

    if family(model) not in MROPE:
        raise NotImplementedError(f"trl_processor builds a Qwen2-VL processor; {family(model)!r} "
                                  "models need their own (transformers' processor for the family)")

    class _Processor(Qwen2VLProcessor):
        def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
            self.image_token, self.video_token = IMAGE_PAD, VIDEO_PAD
            self.image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_PAD)
            self.video_token_id = tokenizer.convert_tokens_to_ids(VIDEO_PAD)
            # skip Qwen2VLProcessor.__init__: its video-processor check imports torchvision
            ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)

    p = ImageProcessor.for_model(model)
    images = Qwen2VLImageProcessorPil(patch_size=p.patch_size, merge_size=p.merge_size,
                                      temporal_patch_size=p.temporal_patch_size,
                                      min_pixels=p.min_pixels, max_pixels=p.max_pixels)
    return _Processor(image_processor=images, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE)
