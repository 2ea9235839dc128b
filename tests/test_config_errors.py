"""A config typo anywhere in a TOML fails at once, naming the key, the section and what is allowed."""

from __future__ import annotations

import subprocess
import sys
import textwrap

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
    assert main(["run", str(cfg), "--no-progress"]) == 2
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
    assert main(["curate", str(spec), "--out", str(tmp_path / "o"), "--no-progress"]) == 2
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


# Run in a fresh interpreter: which modules have executed is the measure of how soon a
# typo is reported (polars, pyarrow, numpy and torch take 0.5-3 s to import on 2 cores).
_HEAVY_CHECK = textwrap.dedent("""
    import sys, types
    from pipelines.cli import main
    assert main(sys.argv[1:]) == 2
    loaded = sorted(m for m in ("polars", "pyarrow", "numpy", "scipy", "torch", "datasketch")
                    if type(sys.modules.get(m)) is types.ModuleType)
    print("LOADED", loaded)
""")


@pytest.mark.parametrize("verb", ["run", "curate"])
def test_typo_is_reported_before_the_data_libraries_load(tmp_path, verb):
    data = tmp_path / "in.jsonl"
    data.write_text('{"question": "1+1?", "answer": "#### 2"}\n')
    cfg = tmp_path / "c.toml"
    if verb == "run":
        cfg.write_text(RUN.format(run=tmp_path / "r", grpo='sampler_args = {temprature = 1}'))
        argv = ["run", str(cfg), "--no-progress"]
    else:
        cfg.write_text(CURATE.format(data=data, stage="max_promt_chars = 10").replace(
            "[[stages]]", '[[stages]]\nstage = "dedup_near"\nthreshold = 0.8\n\n[[stages]]', 1))
        argv = ["curate", str(cfg), "--out", str(tmp_path / "o"), "--no-progress"]
    out = subprocess.run([sys.executable, "-c", _HEAVY_CHECK, *argv], capture_output=True,
                         text=True, check=True)
    assert "unknown key" in out.stderr
    assert "LOADED []" in out.stdout, out.stdout


def test_sampler_argument_out_of_range_fails_at_load(tmp_path, capsys):
    err = _run(tmp_path, capsys, 'sampler = "uniform"\nsampler_args = { skip_flat = 1.5 }')
    assert "sampler_args (uniform): skip_flat must be in [0, 1)" in err
    err = _run(tmp_path, capsys,
               'sampler = "uniform"\nsampler_args = { skip_flat = { hard = 0.5 } }')
    assert "skip_flat takes the keys 'unsolved' and 'solved'" in err
    err = _run(tmp_path, capsys, 'sampler = "uniform"\nsampler_args = { thin_floor = -0.1 }')
    assert "thin_floor must be in [0, 1]" in err
