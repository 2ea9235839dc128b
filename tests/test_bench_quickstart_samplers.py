"""bench/quickstart_samplers.py: its arms are the shipped quickstart with only the sampler changed."""

from __future__ import annotations

import importlib.util
import tomllib
from pathlib import Path

from pipelines.job import RunConfig, load_config, to_toml

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_quickstart_samplers",
                                                  ROOT / "bench" / "quickstart_samplers.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_arms_change_only_the_sampler_seed_and_folder(tmp_path):
    bench = _bench()
    base = tomllib.loads((ROOT / "examples" / "quickstart.toml").read_text())
    for arm, (sampler, args) in bench.ARMS.items():
        cfg = bench.arm_config(base, arm, 2, tmp_path / arm)
        path = tmp_path / f"{arm}.toml"
        path.write_text(to_toml(cfg))
        loaded = load_config(path, RunConfig)  # a config the job accepts
        assert loaded.run.seed == 2 and loaded.grpo.sampler == sampler
        assert dict(loaded.grpo.sampler_args) == args
        rest = {k: v for k, v in cfg["grpo"].items() if k not in ("sampler", "sampler_args")}
        assert rest == {k: v for k, v in base["grpo"].items() if k not in ("sampler", "sampler_args")}
        assert {k: v for k, v in cfg.items() if k not in ("run", "grpo")} == \
            {k: v for k, v in base.items() if k not in ("run", "grpo")}
    # the shipped config is the `cooldown` arm exactly
    assert bench.arm_config(base, "cooldown", 0, Path("x"))["grpo"] == base["grpo"]
    assert base["grpo"]["sampler_args"] == bench.ARMS["cooldown"][1]


def test_summary_pairs_each_seed_with_uniforms(tmp_path):
    bench = _bench()
    runs = {"uniform": [{"held_out_pass1": 0.40, "gain": 0.1, "informative_ratio": 0.2},
                        {"held_out_pass1": 0.30, "gain": 0.1, "informative_ratio": 0.1}],
            "plain": [{"held_out_pass1": 0.35, "gain": 0.1, "informative_ratio": 0.3},
                      {"held_out_pass1": 0.27, "gain": 0.1, "informative_ratio": 0.1}]}
    s = bench.summarize(runs)
    assert abs(s["plain"]["held_out_vs_uniform"] - (-0.04)) < 1e-12
    assert abs(s["plain"]["held_out_vs_uniform_se"] - 0.01) < 1e-12  # stdev(-0.05, -0.03) / sqrt 2
    assert abs(s["plain"]["informative_ratio_vs_uniform"] - 1.25) < 1e-12  # mean(1.5, 1.0)
