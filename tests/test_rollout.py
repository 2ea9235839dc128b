"""thresher rollout / difficulty / export: kill-and-resume, the CLI pipeline into TRL, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
from rollout_helpers import ROOT, THRESHER, band_pipeline, thresher

os.environ["HF_HUB_OFFLINE"] = "1"


def _log(run: Path) -> pl.DataFrame:
    return (pl.read_parquet(str(run / "rollouts" / "*.parquet"))
            .drop("run_id", "ts").sort("sample_id", "response_idx"))


@pytest.fixture(scope="module")
def curated(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("curated") / "cm"
    thresher("curate", ROOT / "examples" / "curate_math.toml", "--out", out, "--no-progress")
    return out


ROLLOUT = ["--model", ROOT / "examples" / "quickstart.toml", "--k", "4", "--max-new-tokens", "8",
           "--limit", "48", "--batch-prompts", "6", "--seed", "3", "--no-progress", "--threads", "1"]


def test_rollout_killed_and_rerun_equals_uninterrupted(curated, tmp_path):
    whole = tmp_path / "whole"
    thresher("rollout", curated, *ROLLOUT, "--out", whole)
    full = _log(whole)
    assert full.height == 48 * 4 and full["sample_id"].n_unique() == 48
    assert full.select("sample_id", "response_idx").is_duplicated().sum() == 0

    # Kill a second run after its first parts land, then rerun it.
    killed = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([THRESHER, "rollout", str(curated),
                             *map(str, ROLLOUT), "--out", str(killed)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and len(list((killed / "rollouts").glob("part-*.parquet"))) < 2:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    before = _log(killed)
    assert 0 < before["sample_id"].n_unique() < 48

    out = thresher("rollout", curated, *ROLLOUT, "--out", killed)
    r = json.loads((killed / "manifest.json").read_text())["rollout"]
    assert r["prompts_skipped_already_logged"] == before["sample_id"].n_unique()
    assert r["prompts_sampled"] == 48 - before["sample_id"].n_unique()  # no prompt sampled twice
    assert r["complete"] and "already in the log" in out.stdout
    after = _log(killed)
    assert after.equals(full)  # the same rows an uninterrupted run wrote

    # The log is a normal rollout log: logs curate and query read it.
    thresher("logs", "curate", killed, "--out", tmp_path / "routed")
    routed = json.loads((tmp_path / "routed" / "manifest.json").read_text())
    assert routed["input"]["prompts"] == 48
    q = thresher("query", killed, "SELECT count(DISTINCT sample_id) AS n FROM rollouts")
    assert "48" in q.stdout

    # A rerun of a finished run samples nothing; other settings on the same run are refused.
    again = thresher("rollout", curated, *ROLLOUT, "--out", killed)
    assert "sampled 0 prompts" in again.stdout
    other = thresher("rollout", curated, *[a if a != "3" else "4" for a in map(str, ROLLOUT)],
                     "--out", killed, check=False)
    assert other.returncode == 2 and "different settings" in other.stderr


def test_cli_pipeline_into_trl_grpo(tmp_path):
    trl = pytest.importorskip("trl")
    datasets = pytest.importorskip("datasets")
    paths = band_pipeline(tmp_path)
    band = json.loads((paths["band"] / "manifest.json").read_text())
    stage = band["stages"][0]
    assert stage["stage"] == "difficulty" and stage["rows_in"] == 8
    # answers 3 and 7 are solved some of the time, 5 never: the band keeps only the former
    kept = pl.read_parquet(str(paths["band"] / "part-*.parquet"))
    assert 0 < kept.height <= 6 and set(kept["answer"]) <= {"3", "7"}
    assert kept["difficulty"].is_between(0, 1, closed="none").all()
    assert (kept["n_rollouts"] == 8).all()
    assert stage["dropped"].get("never_solved", 0) >= 2

    # the statistics store takes the band's difficulty as its prior
    from sampling import SampleStats

    stats = SampleStats.from_samples(kept.to_arrow()).to_arrow().to_pydict()
    assert stats["alpha"][0] != 1.0 or stats["beta"][0] != 1.0

    # verl's columns
    verl = datasets.load_dataset("parquet", data_files=str(paths["verl"] / "train.parquet"))["train"]
    row = verl[0]
    assert set(verl.column_names) == {"data_source", "prompt", "ability", "reward_model", "extra_info"}
    assert row["prompt"][0]["role"] == "user" and row["reward_model"]["style"] == "rule"
    assert row["extra_info"]["index"] in set(kept["id"])

    # TRL reads the export unchanged: a real GRPOTrainer step with a reward over its columns
    train = datasets.load_dataset("parquet", data_files=str(paths["trl"] / "train.parquet"))["train"]
    assert {"prompt", "answer", "solution", "sample_id"} <= set(train.column_names)
    from trainer.modeling import load_pretrained
    from trainer.rewards import verifiable_reward

    seen: list[str] = []

    def reward(prompts, completions, answer, answer_type, sample_id, **kw):
        seen.extend(sample_id)
        return verifiable_reward(prompts, completions, answer=answer, answer_type=answer_type)

    model, tok = load_pretrained(paths["model"])
    args = trl.GRPOConfig(output_dir=str(tmp_path / "grpo"), per_device_train_batch_size=4,
                          num_generations=4, max_completion_length=6, max_steps=1, report_to=[],
                          use_cpu=True, seed=0, bf16=False, logging_steps=1, save_strategy="no")
    trainer = trl.GRPOTrainer(model=model, reward_funcs=reward, args=args, train_dataset=train,
                              processing_class=tok)
    trainer.train()
    assert trainer.state.global_step == 1
    assert len(seen) == 4 and set(seen) <= set(kept["id"])


def test_bad_input_names_what_and_where(curated, tmp_path):
    out = tmp_path / "run"
    p = thresher("rollout", curated, "--model", tmp_path / "no-model", "--out", out, check=False)
    assert p.returncode == 2 and "no-model" in p.stderr and "does not exist" in p.stderr
    assert not out.exists()

    no_answer = tmp_path / "d.jsonl"
    no_answer.write_text(json.dumps({"prompt": "1+1?", "answer": "2"}) + "\n"
                         + json.dumps({"prompt": "2+2?", "answer": None}) + "\n")
    p = thresher("rollout", no_answer, "--model", ROOT / "examples" / "quickstart.toml", "--out", out,
                 check=False)
    assert p.returncode == 2 and "d.jsonl: row 1: column 'answer' is empty" in p.stderr
    assert not out.exists()
    p = thresher("export", no_answer, "--format", "verl", "--out", tmp_path / "ex", check=False)
    assert p.returncode == 2 and "row 1" in p.stderr and not (tmp_path / "ex").exists()

    bad_type = tmp_path / "t.jsonl"
    bad_type.write_text(json.dumps({"prompt": "print 1", "answer": "1", "answer_type": "code"}) + "\n")
    p = thresher("rollout", bad_type, "--model", ROOT / "examples" / "quickstart.toml", "--out", out,
                 check=False)
    assert p.returncode == 2 and "t.jsonl: row 0: answer_type 'code' has no verifier" in p.stderr
    assert not out.exists()

    from trainer.rollout import RolloutInputError, check_samples

    img = pa.array([[], [{"path": "f.png", "sha256": "s"}]],
                   pa.list_(pa.struct([("path", pa.string()), ("sha256", pa.string())])))
    with pytest.raises(RolloutInputError, match=r"mm.parquet: row 1: has images"):
        check_samples(pa.table({"prompt": ["a", "b"], "answer": ["1", "2"], "images": img}), "mm.parquet")

    p = thresher("rollout", curated, "--model", ROOT / "examples" / "quickstart.toml", "--out", out,
                 "--engine", "vllm", check=False)
    try:
        import vllm  # noqa: F401
    except ImportError:
        assert p.returncode == 2 and "vLLM is not installed" in p.stderr


def test_difficulty_stage_in_a_spec_after_a_rollout_stage(tmp_path):
    from pipelines.curation import read_curated, run_curation

    rows = [{"question": f"What is {a} + {b}? ({a}{b})", "answer": f"#### {a + b}"}
            for a, b in [(1, 2), (3, 4), (2, 2)]]
    raw = tmp_path / "raw.jsonl"
    raw.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = {"sources": [{"path": str(raw), "preset": "gsm8k"}],
            "stages": [{"stage": "rollout", "model": str(ROOT / "examples" / "quickstart.toml"),
                        "out": str(tmp_path / "run"), "k": 2, "max_new_tokens": 4},
                       {"stage": "difficulty", "include_low": True}]}
    m = run_curation(spec, tmp_path / "out", progress=False)
    assert m["stages"][0]["rows_out"] == 3 and m["stages"][0]["info"]["responses"] == 6
    out = read_curated(tmp_path / "out").to_pydict()
    assert out["n_rollouts"] == [2, 2, 2] and all(d == 0.0 for d in out["difficulty"])
    with pytest.raises(ValueError, match=r"stages\[0\] \(difficulty\): unknown key 'band'"):
        run_curation({**spec, "stages": [{"stage": "difficulty", "band": 1}]}, tmp_path / "x",
                     progress=False)
    assert not (tmp_path / "x").exists()


def test_export_multimodal_rows_carry_images_and_placeholders(tmp_path):
    from curate.export import export

    img = tmp_path / "a.png"
    from PIL import Image

    Image.new("RGB", (4, 4), "red").save(img)
    t = pa.table({"id": ["m1", "t1"], "source": ["mathv", "mathv"], "domain": ["geo", "geo"],
                  "prompt": ["How many sides? <image1>", "2+2?"],
                  "images": [[{"path": str(img), "sha256": "x"}], []],
                  "answer": ["4", "4"], "answer_type": ["numeric", "numeric"]})
    export(t, tmp_path / "v", "verl")
    export(t, tmp_path / "t", "trl")
    import datasets

    v = datasets.load_dataset("parquet", data_files=str(tmp_path / "v" / "train.parquet"))["train"]
    assert v[0]["prompt"][0]["content"] == "How many sides? <image>" and len(v[0]["images"]) == 1
    assert v[1]["prompt"][0]["content"] == "2+2?" and v[1]["images"] == []
    tr = datasets.load_dataset("parquet", data_files=str(tmp_path / "t" / "train.parquet"))["train"]
    assert tr[0]["images"][0].size == (4, 4)  # decoded to PIL by datasets
    assert [p["type"] for p in tr[0]["prompt"][0]["content"]] == ["image", "text"]
    with pytest.raises(ValueError, match=r"row 0: image '.*missing.png' cannot be read"):
        export(t.set_column(4, "images", pa.array([[{"path": str(tmp_path / "missing.png"),
                                                     "sha256": "x"}], []],
                                                   t.schema.field("images").type)),
               tmp_path / "bad", "verl")
    assert not (tmp_path / "bad").exists()
