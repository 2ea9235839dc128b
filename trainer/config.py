"""Trainer configs: typed models (curate.config.Config), loadable from TOML.

Every field's meaning and default is in the class docstring. The optimizer
settings shared by SFT and GRPO live once, in `OptimizerConfig`. An unknown
key or a bad value is an error that names the key and what is allowed:

>>> GRPOConfig.from_dict({"group_size": 4}).group_size
4
>>> try:
...     GRPOConfig.from_dict({"group_sise": 4}, section="grpo")
... except ConfigError as e:
...     print(str(e).split(" (")[-1])
grpo.group_sise: unknown key, did you mean 'group_size'?)
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from curate.config import Config, ConfigError, signature_model, validate_params

__all__ = ["ConfigError", "GRPOConfig", "OptimizerConfig", "SFTConfig"]

Device = Literal["auto", "cpu", "cuda"]


class OptimizerConfig(Config):
    """AdamW, learning-rate schedule, clipping, seed and device: shared by SFT and GRPO.

    Parameters:
        lr: peak learning rate of AdamW (SFT 1e-3, GRPO 1e-4 by default).
        lr_schedule: "constant" or "cosine" decay after warm-up (SFT "cosine", GRPO "constant").
        warmup_steps: linear warm-up steps (default 0).
        weight_decay: AdamW weight decay (default 0.0).
        max_grad_norm: gradient-norm clip (default 1.0).
        seed: seed of every random choice of the trainer (default 0). In a `thresher
            run` / `train` config it is set once, in `[run]`.
        device: "auto" (CUDA + bf16 when present, else CPU fp32), "cpu" or "cuda"
            (default "auto"). In a `thresher run` / `train` config it is set once, in `[run]`.
    """

    lr: float = Field(default=1e-3, gt=0)
    lr_schedule: Literal["constant", "cosine"] = "cosine"
    warmup_steps: int = Field(default=0, ge=0)
    weight_decay: float = Field(default=0.0, ge=0)
    max_grad_norm: float = Field(default=1.0, gt=0)
    seed: int = 0
    device: Device = "auto"


class GRPOConfig(OptimizerConfig):
    """GRPO hyper-parameters (defaults follow DAPO / Dr. GRPO where they differ from GRPO).

    Parameters (besides the `OptimizerConfig` ones; here `lr` = 1e-4, `lr_schedule` = "constant"):
        steps: training steps (default 100).
        prompts_per_step: prompts drawn by the sampler each step (default 16).
        group_size: responses per prompt, G (default 8, at least 2).
        max_new_tokens: response length cap (default 16).
        temperature: sampling temperature of the rollouts (default 1.0).
        top_p: nucleus sampling of the rollouts (default 1.0).
        inner_updates: optimizer passes over each step's rollouts (default 1).
        minibatches: minibatches per pass (default 1).
        clip_low: PPO clip range below 1 (default 0.2).
        clip_high: PPO clip range above 1, DAPO clip-higher (default 0.28).
        beta: k3 KL weight to the reference model (default 0.0: no reference).
        loss_agg: "token" (DAPO: mean over every response token of the batch),
            "sequence" (original GRPO: mean per response, then over responses) or
            "dr_grpo" (sum over tokens / (responses x max_new_tokens)); default "token".
        adv_scale: divide advantages by the group std ("group", default), the batch
            std ("batch") or not at all ("none", Dr. GRPO).
        drop_uninformative: skip groups whose rewards are all equal (default true).
        fill: DAPO dynamic sampling (default false). Off: each step rolls out
            `prompts_per_step` groups and updates on the informative ones among them.
            On: each step draws groups from the sampler in rounds until
            `prompts_per_step` informative groups are in hand and updates on exactly
            those; every rollout generated is logged (kept = false for the dropped),
            so a run's cost is its rollouts.
        fill_max_rounds: rounds per step before a fill step goes on with fewer
            groups (default 8; the step's metrics then say fill_short = 1).
        fill_round_max: the largest fill round, in multiples of `prompts_per_step`
            (default 4.0).
        sampler: prompt sampler, a name of `sampling.SAMPLERS` (default "thompson").
        sampler_args: keyword arguments of that sampler (default {}), checked against
            its signature when the config is read.
        store_args: `sampling.StoreParams` settings of the statistics store (default {}:
            its defaults), checked when the config is read.
        reward_correct: reward of a correct answer (default 1.0).
        reward_format: reward of a well-formatted answer (default 0.1).
        reward_length: length penalty weight (default 0.0).
        save_every: checkpoint every this many steps (default 10).
        keep_checkpoints: checkpoints kept on disk (default 2).

    >>> cfg = GRPOConfig(group_size=4, loss_agg="dr_grpo", adv_scale="none")
    >>> cfg.group_size, cfg.loss_agg, cfg.adv_scale, (cfg.clip_low, cfg.clip_high)
    (4, 'dr_grpo', 'none', (0.2, 0.28))
    >>> cfg.to_dict()["sampler"], cfg.beta, cfg.lr
    ('thompson', 0.0, 0.0001)
    """

    lr: float = Field(default=1e-4, gt=0)
    lr_schedule: Literal["constant", "cosine"] = "constant"
    steps: int = Field(default=100, ge=1)
    prompts_per_step: int = Field(default=16, ge=1)
    group_size: int = Field(default=8, ge=2)
    max_new_tokens: int = Field(default=16, ge=1)
    temperature: float = Field(default=1.0, gt=0)
    top_p: float = Field(default=1.0, gt=0, le=1)
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

    @field_validator("sampler")
    @classmethod
    def _known_sampler(cls, name: str) -> str:
        from sampling import SAMPLERS

        if name not in SAMPLERS:
            raise ValueError(f"unknown sampler {name!r}: allowed are {', '.join(sorted(SAMPLERS))}")
        return name

    @field_validator("store_args")
    @classmethod
    def _store_args(cls, args: dict[str, Any]) -> dict[str, Any]:
        import dataclasses

        from sampling import StoreParams

        allowed = [f.name for f in dataclasses.fields(StoreParams)]
        unknown = sorted(set(args) - set(allowed))
        if unknown:
            raise ValueError(f"unknown store setting {unknown[0]!r}: allowed are {', '.join(allowed)}")
        StoreParams(**args)  # its own value checks
        return args

    @model_validator(mode="after")
    def _sampler_args(self) -> GRPOConfig:
        from sampling import SAMPLERS

        cls = SAMPLERS[self.sampler]
        # the trainer passes group_size and seed itself
        model = signature_model(cls.__init__, self.sampler, skip=("stats", "group_size", "seed"))
        try:
            validate_params(model, self.sampler_args, where=f"sampler_args ({self.sampler})")
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        _check_sampler_values(cls, self.sampler, self.sampler_args)
        return self


def _check_sampler_values(cls: type, name: str, args: dict[str, Any]) -> None:
    """Build the sampler once on a two-prompt store, so that a value out of range
    (`skip_flat = 1.5`, `thin_floor = -1`) fails when the file is read, not when
    training starts. `weights` names the real set's domains and is checked there."""
    from sampling import SampleStats

    try:
        cls(SampleStats(["a", "b"]), **{k: v for k, v in args.items() if k != "weights"})
    except (ValueError, TypeError) as exc:
        raise ValueError(f"sampler_args ({name}): {exc}") from None


class SFTConfig(OptimizerConfig):
    """Supervised fine-tuning (cold start) hyper-parameters.

    The loss covers response tokens only. `packing` concatenates examples
    into rows of `max_length` tokens (position ids restart per example).

    Parameters (besides the `OptimizerConfig` ones; here `lr` = 1e-3, `lr_schedule` = "cosine"):
        epochs: passes over the data (default 1.0; fractions allowed).
        max_steps: stop after this many optimizer steps (default None: `epochs` decides).
        batch_size: examples per micro-batch (default 32).
        grad_accum: micro-batches per optimizer step (default 1).
        max_length: token cap of prompt + response (default 64).
        packing: pack examples into rows of `max_length` tokens (default false).
        save_every: checkpoint every this many steps (default None: only the final model).

    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "run.toml"
    >>> _ = path.write_text("[sft]\\nmax_steps = 50\\npacking = true\\n")
    >>> cfg = SFTConfig.from_toml(path, section="sft")
    >>> cfg.max_steps, cfg.packing, cfg.lr, cfg.lr_schedule
    (50, True, 0.001, 'cosine')
    >>> try:
    ...     SFTConfig.from_dict({"lr": -1}, section="sft")
    ... except ConfigError as e:
    ...     print(e)
    sft.lr: Input should be greater than 0 (got -1)
    """

    epochs: float = Field(default=1.0, gt=0)
    max_steps: int | None = Field(default=None, ge=1)
    batch_size: int = Field(default=32, ge=1)
    grad_accum: int = Field(default=1, ge=1)
    max_length: int = Field(default=64, ge=2)
    packing: bool = False
    save_every: int | None = Field(default=None, ge=1)
