"""A config typo anywhere in a TOML fails at once, naming the key, the section and what is allowed."""

from __future__ import annotations

import time

import pytest

from curate.config import Config
from pipelines.cli import main

RUN = """
[run]
dir = "{run}"
device = "cpu"

[data]
n_rl = 40
n_sft = 20
n_eval = 10

[grpo]
steps = 1
{grpo}
"""

CURATE = """
[[sources]]
path = "{data}"
preset = "gsm8k"

[[stages]]
stage = "length_bounds"
{stage}
"""


def _run(tmp_path, capsys, grpo: str) -> str:
    cfg = tmp_path / "run.toml"
    cfg.write_text(RUN.format(run=tmp_path / "r", grpo=grpo))
    t = time.perf_counter()
    assert main(["run", str(cfg), "--no-progress"]) == 2
    assert time.perf_counter() - t < 5  # fails before any data is generated (about 0.1 s)
    assert not (tmp_path / "r").exists()
    err = capsys.readouterr().err
    assert str(cfg) in err
    return err


def test_trainer_field_typo(tmp_path, capsys):
    err = _run(tmp_path, capsys, "group_sise = 4")
    assert "unknown key 'grpo.group_sise'" in err and "allowed keys are" in err
    assert "prompts_per_step" in err and "did you mean 'group_size'" in err


def test_sampler_name_typo(tmp_path, capsys):
    err = _run(tmp_path, capsys, 'sampler = "thomson"')
    assert "grpo.sampler: unknown sampler 'thomson': allowed are" in err and "thompson" in err


def test_sampler_argument_typo(tmp_path, capsys):
    err = _run(tmp_path, capsys, 'sampler = "thompson"\nsampler_args = { pool_factr = 2.0 }')
    assert "sampler_args (thompson): unknown key 'pool_factr'" in err and "pool_factor" in err


def test_store_parameter_typo(tmp_path, capsys):
    err = _run(tmp_path, capsys, "store_args = { prior_strenght = 8 }")
    assert "grpo.store_args: unknown store setting 'prior_strenght'" in err
    assert "prior_strength" in err
    err = _run(tmp_path, capsys, "store_args = { fast_half_life = 0 }")
    assert "fast_half_life must be None (off) or a number of steps > 0" in err


def test_seed_and_device_live_in_run(tmp_path, capsys):
    err = _run(tmp_path, capsys, 'device = "cuda"')
    assert "grpo.device: device is set once for the whole job, in [run]" in err


def test_stage_parameter_typo(tmp_path, capsys):
    data = tmp_path / "in.jsonl"
    data.write_text('{"question": "1+1?", "answer": "#### 2"}\n')
    spec = tmp_path / "spec.toml"
    spec.write_text(CURATE.format(data=data, stage="max_promt_chars = 10"))
    t = time.perf_counter()
    assert main(["curate", str(spec), "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    assert time.perf_counter() - t < 5
    err = capsys.readouterr().err
    assert "stages[0] (length_bounds): unknown key 'max_promt_chars': allowed keys are" in err
    assert "did you mean 'max_prompt_chars'" in err and str(spec) in err
    spec.write_text(CURATE.format(data=data, stage="").replace("length_bounds", "lenght_bounds"))
    assert main(["curate", str(spec), "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    assert "unknown stage 'lenght_bounds': expected one of" in capsys.readouterr().err


def test_mixture_search_pilot_typo(tmp_path, capsys):
    spec = tmp_path / "search.toml"
    spec.write_text('[search]\ndomains = ["add", "mul"]\npilot = "grpo"\n[pilot]\nn_sfft = 3\n')
    assert main(["mixture", "search", str(spec), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'pilot.n_sfft'" in err and "did you mean 'n_sft'" in err


def test_every_config_field_is_documented():
    from pipelines.job import EvalSection, FileData, ModelSection, RunSection, SyntheticData
    from pipelines.mixture_search import SearchSection
    from trainer.config import GRPOConfig, OptimizerConfig, SFTConfig

    for cls in (GRPOConfig, SFTConfig, OptimizerConfig, RunSection, SyntheticData, FileData,
                ModelSection, EvalSection, SearchSection):
        assert issubclass(cls, Config)
        doc = "".join(c.__doc__ or "" for c in cls.__mro__ if issubclass(c, Config))
        missing = [f for f in cls.model_fields if f"{f}:" not in doc]
        assert not missing, f"{cls.__name__}: undocumented fields {missing}"


def test_optimizer_fields_live_once():
    from trainer.config import GRPOConfig, OptimizerConfig, SFTConfig

    shared = set(OptimizerConfig.model_fields)
    assert {"lr", "lr_schedule", "warmup_steps", "weight_decay", "max_grad_norm"} <= shared
    for cls in (SFTConfig, GRPOConfig):
        assert shared <= set(cls.model_fields)
        own = {k for k in cls.__annotations__}
        assert own & shared <= {"lr", "lr_schedule"}  # only their defaults differ


@pytest.mark.parametrize("section", ["sft", "grpo"])
def test_job_seed_reaches_the_trainers(section):
    from pipelines.job import RunConfig

    cfg = RunConfig.from_dict({"run": {"seed": 7, "device": "cpu"}})
    sub = cfg.stage_config(getattr(cfg, section))
    assert (sub.seed, sub.device) == (7, "cpu")
