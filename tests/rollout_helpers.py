"""Shared by the rollout / export tests (and tests/real_verl): a tiny model that answers 3 or 7,
and the raw-files -> curate -> rollout -> difficulty band pipeline through the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
THRESHER = str(Path(sys.executable).parent / "thresher")  # the console script of this venv


def thresher(*args: str, check: bool = True, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the CLI in a subprocess (one torch thread, offline)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([THRESHER, *map(str, args)], cwd=cwd or ROOT,
                          env=env, capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"thresher {' '.join(map(str, args))} failed ({proc.returncode}):\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


RAW_ROWS = [  # GSM8K-style raw rows: answers 3 and 7 are sometimes solved, 5 never
    *({"question": f"Tom has {n} apples and eats {n - a}. How many are left? (case {i})",
       "answer": f"{n} - {n - a} = {a}\n#### {a}"}
      for i, (n, a) in enumerate([(9, 3), (12, 7), (10, 5), (8, 3), (15, 7), (11, 5), (13, 3), (14, 7)])),
]


def coin_model(path: Path, steps: int = 120) -> Path:
    """Save a tiny char-level Qwen2 that answers "\\boxed{3}" or "\\boxed{7}", about half each,
    whatever the prompt: prompts whose answer is 3 or 7 get a pass rate strictly between 0 and 1,
    the others 0."""
    from trainer.modeling import TinyModelSpec, build_tiny_model, char_tokenizer

    torch.manual_seed(0)
    tok = char_tokenizer()
    model = build_tiny_model(tok, TinyModelSpec(hidden_size=32, num_layers=1, num_heads=2,
                                                intermediate_size=64, max_positions=64))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    prompts = [r["question"] for r in RAW_ROWS] + [f"q{i}: what is {i}+{i}?" for i in range(8)]
    for step in range(steps):
        texts = [p + ("\\boxed{3}" if (i + step) % 2 else "\\boxed{7}") for i, p in enumerate(prompts)]
        enc = [tok(t, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for t in texts]
        width = max(map(len, enc))
        ids = torch.tensor([[tok.pad_token_id] * (width - len(e)) + e for e in enc])
        mask = (torch.arange(width)[None, :] >= torch.tensor([width - len(e) for e in enc])[:, None]).long()
        labels = ids.masked_fill(mask == 0, -100)
        pos = (mask.cumsum(1) - 1).clamp(min=0)
        loss = model(input_ids=ids, attention_mask=mask, position_ids=pos, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def band_pipeline(tmp: Path) -> dict[str, Path]:
    """raw JSONL -> thresher curate -> thresher rollout -> difficulty band (a curation spec
    with the `difficulty` stage) -> thresher export verl / trl. Returns the paths."""
    raw = tmp / "raw.jsonl"
    raw.write_text("".join(json.dumps(r) + "\n" for r in RAW_ROWS))
    spec = tmp / "curate.toml"
    spec.write_text(f'name = "raw"\n[[sources]]\npath = "{raw}"\npreset = "gsm8k"\n'
                    '[[stages]]\nstage = "unverifiable"\n[[stages]]\nstage = "dedup_exact"\n')
    curated, run = tmp / "curated", tmp / "run"
    thresher("curate", spec, "--out", curated, "--no-progress")
    model = coin_model(tmp / "coin-model")
    thresher("rollout", curated, "--model", model, "--k", "8", "--max-new-tokens", "6",
             "--out", run, "--no-progress", "--seed", "0")
    band_spec = tmp / "band.toml"
    band_spec.write_text(f'name = "band"\n[[sources]]\npath = "{curated}/part-*.parquet"\npreset = "sample"\nname = "gsm8k"\n'
                         f'[[stages]]\nstage = "difficulty"\nrun = "{run}"\n')
    band = tmp / "band"
    thresher("curate", band_spec, "--out", band, "--no-progress")
    verl_dir, trl_dir = tmp / "verl", tmp / "trl"
    thresher("export", band, "--format", "verl", "--out", verl_dir)
    thresher("export", band, "--format", "trl", "--out", trl_dir)
    return {"raw": raw, "curated": curated, "run": run, "band": band, "verl": verl_dir,
            "trl": trl_dir, "model": model}
