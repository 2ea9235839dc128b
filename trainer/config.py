"""Trainer configs: dataclasses validated by pydantic, loadable from TOML.

An unknown key or a bad value is an error that names the key:

>>> GRPOConfig.from_dict({"group_size": 4}).group_size
4
>>> try:
...     GRPOConfig.from_dict({"group_sise": 4}, section="grpo")
... except ConfigError as e:
...     print(e)
grpo.group_sise: unknown key
"""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationError, field_validator
from pydantic.dataclasses import dataclass

_STRICT = ConfigDict(extra="forbid")


class ConfigError(ValueError):
    """A config key is unknown or its value is invalid (the message names the key).

    >>> try:
    ...     SFTConfig.from_dict({"lr": -1}, section="sft")
    ... except ConfigError as e:
    ...     print(e)
    sft.lr: Input should be greater than 0 (got -1)
    >>> try:
    ...     GRPOConfig.from_dict({"loss_agg": "mean"}, section="grpo", source="run.toml")
    ... except ConfigError as e:
    ...     print(e)
    run.toml: grpo.loss_agg: Input should be 'token', 'sequence' or 'dr_grpo' (got 'mean')
    """


def format_validation_error(exc: ValidationError, section: str = "", source: str = "") -> str:
    """One line per problem: ``[file: ]section.key: what was expected``."""
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in (section, *err["loc"]) if p != "")
        unknown = err["type"] in ("extra_forbidden", "unexpected_keyword_argument")
        msg = "unknown key" if unknown else err["msg"]
        if not unknown and err["type"] != "missing" and "input" in err:
            msg += f" (got {err['input']!r})"
        lines.append(f"{source + ': ' if source else ''}{key}: {msg}")
    return "\n".join(lines)


class _Loadable:
    @classmethod
    def from_dict(cls, data: dict[str, Any], section: str = "", source: str = ""):
        try:
            return cls(**data)
        except ValidationError as exc:
            raise ConfigError(format_validation_error(exc, section, source)) from None
        except TypeError as exc:  # pydantic dataclasses raise TypeError for some arg issues
            raise ConfigError(f"{source + ': ' if source else ''}{section}: {exc}") from None

    @classmethod
    def from_toml(cls, path: str | Path, section: str | None = None):
        """Load from a TOML file (optionally one `[section]` of it)."""
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
        if section:
            data = data.get(section, {})
        return cls.from_dict(data, section or "", str(path))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(config=_STRICT)
class GRPOConfig(_Loadable):
    """GRPO hyper-parameters (defaults follow DAPO / Dr. GRPO where they differ from GRPO).

    loss_agg: "token" (DAPO: mean over every response token of the batch),
    "sequence" (original GRPO: mean per response, then over responses) or
    "dr_grpo" (sum over tokens divided by responses x max_new_tokens).
    adv_scale: divide advantages by the group std ("group"), the batch std
    ("batch") or not at all ("none", Dr. GRPO).
    fill: DAPO dynamic sampling. Off: each step rolls out `prompts_per_step`
    groups and updates on the informative ones among them. On: each step draws
    groups from the sampler in rounds until `prompts_per_step` informative
    groups are in hand and updates on exactly those; every rollout generated
    is logged (kept = false for the dropped), so a run's cost is its rollouts.
    fill_max_rounds: rounds per step before the step goes on with fewer groups.
    fill_round_max: the largest round, in multiples of `prompts_per_step`.
    sampler_args: keyword arguments of the sampler (`sampling.make_sampler`).
    store_args: `sampling.StoreParams` fields of the statistics store (e.g.
    share = true, group_keys = ["level"]), checked when the config is read.

    >>> cfg = GRPOConfig(group_size=4, loss_agg="dr_grpo", adv_scale="none")
    >>> cfg.group_size, cfg.loss_agg, cfg.adv_scale, (cfg.clip_low, cfg.clip_high)
    (4, 'dr_grpo', 'none', (0.2, 0.28))
    >>> cfg.to_dict()["sampler"], cfg.beta
    ('thompson', 0.0)
    """

    steps: int = Field(default=100, ge=1)
    prompts_per_step: int = Field(default=16, ge=1)
    group_size: int = Field(default=8, ge=2)
    max_new_tokens: int = Field(default=16, ge=1)
    temperature: float = Field(default=1.0, gt=0)
    top_p: float = Field(default=1.0, gt=0, le=1)
    lr: float = Field(default=1e-4, gt=0)
    lr_schedule: Literal["constant", "cosine"] = "constant"
    warmup_steps: int = Field(default=0, ge=0)
    weight_decay: float = Field(default=0.0, ge=0)
    max_grad_norm: float = Field(default=1.0, gt=0)
    inner_updates: int = Field(default=1, ge=1)
    minibatches: int = Field(default=1, ge=1)
    clip_low: float = Field(default=0.2, ge=0)
    clip_high: float = Field(default=0.28, ge=0)
    beta: float = Field(default=0.0, ge=0)
    loss_agg: Literal["token", "sequence", "dr_grpo"] = "token"
    adv_scale: Literal["group", "batch", "none"] = "group"
    drop_uninformative: bool = True
    fill: bool = False
    fill_max_rounds: int = Field(default=8, ge=1)
    fill_round_max: float = Field(default=4.0, ge=1)
    sampler: str = "thompson"
    sampler_args: dict[str, Any] = Field(default_factory=dict)
    store_args: dict[str, Any] = Field(default_factory=dict)
    reward_correct: float = 1.0
    reward_format: float = 0.1
    reward_length: float = 0.0
    save_every: int = Field(default=10, ge=1)
    keep_checkpoints: int = Field(default=2, ge=1)
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"


    @field_validator("store_args")
    @classmethod
    def _known_store_params(cls, v: dict[str, Any]) -> dict[str, Any]:
        from sampling import StoreParams

        try:
            StoreParams(**v)
        except TypeError as exc:
            allowed = ", ".join(f.name for f in dataclasses.fields(StoreParams))
            raise ValueError(f"{exc}; the store takes {allowed}") from None
        return v

    @field_validator("sampler")
    @classmethod
    def _known_sampler(cls, v: str) -> str:
        from sampling import SAMPLERS

        if v not in SAMPLERS:
            raise ValueError(f"unknown sampler {v!r}; choose one of {sorted(SAMPLERS)}")
        return v


@dataclass(config=_STRICT)
class SFTConfig(_Loadable):
    """Supervised fine-tuning (cold start) hyper-parameters.

    The loss covers response tokens only. `packing` concatenates examples
    into rows of `max_length` tokens (position ids restart per example).

    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "run.toml"
    >>> _ = path.write_text("[sft]\\nmax_steps = 50\\npacking = true\\n")
    >>> cfg = SFTConfig.from_toml(path, section="sft")
    >>> cfg.max_steps, cfg.packing, cfg.lr, cfg.lr_schedule
    (50, True, 0.001, 'cosine')
    """

    epochs: float = Field(default=1.0, gt=0)
    max_steps: int | None = Field(default=None, ge=1)
    batch_size: int = Field(default=32, ge=1)
    grad_accum: int = Field(default=1, ge=1)
    lr: float = Field(default=1e-3, gt=0)
    lr_schedule: Literal["constant", "cosine"] = "cosine"
    warmup_steps: int = Field(default=0, ge=0)
    weight_decay: float = Field(default=0.0, ge=0)
    max_grad_norm: float = Field(default=1.0, gt=0)
    max_length: int = Field(default=64, ge=2)
    packing: bool = False
    save_every: int | None = Field(default=None, ge=1)
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
