"""The TRL plugin across two processes (accelerate launch, CPU, gloo): identical stores,
one prompt stream, and a log holding each completion exactly once."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

pytest.importorskip("trl")
pytest.importorskip("accelerate")

ROOT = Path(__file__).resolve().parents[1]
STEPS, G, PROMPTS_PER_STEP = 4, 4, 2  # per_device_train_batch_size 4 x 2 processes = 2 prompts x 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_share_store_stream_and_log(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [str(Path(sys.executable).parent / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(_free_port()),
           "examples/trl_accelerate.py", "--out", str(out), "--steps", str(STEPS)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "2 processes (gloo)" in proc.stdout

    ranks = out / "ranks"
    # 1. every process holds a byte-identical store (and sampler RNG state) after training
    snap0, snap1 = (ranks / f"stats-rank{r}.parquet" for r in (0, 1))
    assert snap0.read_bytes() == snap1.read_bytes()
    # 2. both samplers drew the same prompt stream
    draws = [json.loads((ranks / f"draws-rank{r}.json").read_text()) for r in (0, 1)]
    assert draws[0] == draws[1] and len(draws[0]) >= STEPS

    # 3. the log holds exactly the completions TRL generated across both ranks, once each
    generated = [json.loads(line) for r in (0, 1)
                 for line in (ranks / f"completions-rank{r}.jsonl").read_text().splitlines()]
    log = pq.read_table(sorted((out / "rollouts").glob("part-*.parquet"))).to_pydict()
    assert len(log["sample_id"]) == len(generated) == STEPS * PROMPTS_PER_STEP * G
    assert Counter(zip(log["sample_id"], log["response"], log["reward"], strict=True)) == Counter(
        (g["sample_id"], g["completion"], g["reward"]) for g in generated)
    # 4. per step, the logged prompts are the drawn ones, each with exactly G completions
    by_step = {d["step"]: d["ids"] for d in draws[0]}
    for step in range(1, STEPS + 1):
        ids = [s for s, t in zip(log["sample_id"], log["step"], strict=True) if t == step]
        counts = Counter(ids)
        assert set(counts) == set(by_step[step]), step  # no prompt id missing or extra
        assert all(c == G * Counter(by_step[step])[s] for s, c in counts.items()), step  # none doubled
    # the store counted each completion once
    from sampling import SampleStats

    seen = SampleStats.load(snap0).to_arrow().column("n_seen").to_pylist()
    assert sum(seen) == len(generated)
