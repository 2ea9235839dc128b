"""The embedded trainer: SFT cold start, GRPO driven by the dynamic sampler,
reward functions and Parquet rollout logs.

Names load lazily, so `import trainer` does not import torch until needed.

>>> from trainer import GRPOConfig
>>> GRPOConfig(group_size=4).adv_scale
'group'
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "GRPOTrainer": "trainer.grpo",
    "GRPOConfig": "trainer.config",
    "SFTTrainer": "trainer.sft",
    "SFTConfig": "trainer.config",
    "ConfigError": "trainer.config",
    "RolloutWriter": "curate.rollout_log",
    "verifiable_reward": "trainer.rewards",
    "format_reward": "trainer.rewards",
    "length_reward": "trainer.rewards",
    "combine": "trainer.rewards",
    "CombinedReward": "trainer.rewards",
    "default_reward": "trainer.rewards",
    "group_advantages": "trainer.losses",
    "policy_loss": "trainer.losses",
    "char_tokenizer": "trainer.modeling",
    "build_tiny_model": "trainer.modeling",
    "TinyModelSpec": "trainer.modeling",
    "load_pretrained": "trainer.modeling",
    "auto_device": "trainer.modeling",
    "evaluate": "trainer.evaluation",
    "vision_tokenizer": "trainer.vision",
    "build_tiny_vlm": "trainer.vision",
    "TinyVLMSpec": "trainer.vision",
    "VisionInputs": "trainer.vision",
    "ImageError": "trainer.vision",
    "trl_processor": "trainer.vision",
    "blank_images": "trainer.evaluation",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'trainer' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
