"""The Ray engine (pipelines.ray_engine) against the local engine: the same bytes, row for
row, on the shipped examples, on a planted-duplicate set with bad input, and its errors."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from curate.errors import ConfigError, DataError
from pipelines.curation import run_curation
from pipelines.ray_dedup import group_pairs
from pipelines.ray_engine import row_key

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
DATA = EXAMPLES / "data"
SHARED = ROOT.parent / "shared" / "data"
FILES = ["audit/dropped.parquet", "audit/quarantine.parquet", "audit/clusters.parquet", "spec.json"]


def _timeless(obj):
    if isinstance(obj, dict):
        return {k: _timeless(v) for k, v in obj.items() if not k.startswith("seconds") and k != "engine"}
    if isinstance(obj, list):
        return [_timeless(v) for v in obj]
    return obj


def _same_output(a: Path, b: Path) -> dict:
    """Assert two runs wrote the same files and manifest (timings aside); the manifest."""
    ma, mb = (json.loads((d / "manifest.json").read_text()) for d in (a, b))
    assert mb["content_hash"] == ma["content_hash"]
    assert _timeless(mb) == _timeless(ma)
    shards = [s["path"] for s in ma["output"]["shards"]]
    assert sorted(p.name for p in b.glob("*.parquet")) == shards
    for name in shards + FILES:
        assert (a / name).exists() == (b / name).exists(), name
        if (a / name).exists():
            assert (a / name).read_bytes() == (b / name).read_bytes(), name
    # row for row, the way a reader sees them
    for name in ("audit/dropped.parquet", "audit/quarantine.parquet"):
        assert pl.read_parquet(b / name).equals(pl.read_parquet(a / name)), name
    return ma


def _both(spec, tmp_path: Path) -> dict:
    local = run_curation(spec, tmp_path / "local", progress=False)
    ray_m = run_curation(spec, tmp_path / "ray", progress=False, engine="ray")
    assert local["engine"] == "local" and ray_m["engine"] == "ray"
    return _same_output(tmp_path / "local", tmp_path / "ray")


# ------------------------------------------------------------------ no cluster needed
def test_group_pairs_link_buckets_as_the_local_engine_does():
    from curate.dedup import _MAX_BUCKET_PAIRS, _bucket_pairs

    rng = np.random.default_rng(0)
    groups = [np.sort(rng.choice(500, size=s, replace=False)) for s in (2, 3, 5, 70, 90, 2)]
    local = _bucket_pairs([[set(g.tolist()) for g in groups]])
    assert np.array_equal(group_pairs(groups, _MAX_BUCKET_PAIRS), local)
    assert len(group_pairs(groups, None)) > len(local)  # dedup_images links every pair
    assert row_key(0, 0, 5) < row_key(0, 1, 0) < row_key(1, 0, 0)


def test_engine_ray_without_ray_names_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    spec = {"sources": [{"path": str(DATA / "gsm8k" / "test.jsonl"), "preset": "gsm8k"}]}
    with pytest.raises(ConfigError, match=r"pip install 'thresher\[ray\]'"):
        run_curation(spec, tmp_path / "o", progress=False, engine="ray")
    with pytest.raises(ConfigError, match=r"pip install 'thresher\[ray\]'"):
        run_curation({**spec, "engine": "ray"}, tmp_path / "o", progress=False)


def test_an_address_is_for_the_ray_engine(tmp_path, monkeypatch):
    spec = {"sources": [{"path": str(DATA / "gsm8k" / "test.jsonl"), "preset": "gsm8k"}]}
    with pytest.raises(ConfigError, match="address 'auto' is for the ray engine"):
        run_curation(spec, tmp_path / "o", progress=False, engine="local", address="auto")
    monkeypatch.setitem(sys.modules, "ray", None)  # an address alone asks for Ray
    with pytest.raises(ConfigError, match="needs Ray Data"):
        run_curation(spec, tmp_path / "o", progress=False, address="auto")


def test_a_spec_typo_fails_before_ray_is_imported(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('engine = "ray"\n[[sources]]\npath = "x.jsonl"\npreset = "gsm8k"\ncolour = 1\n')
    code = ("import sys\nfrom pipelines.cli import main\nrc = main(['curate', sys.argv[1], '--out', "
            "sys.argv[2], '--engine', 'ray'])\nassert 'ray' not in sys.modules, 'ray imported'\n"
            "sys.exit(rc)")
    res = subprocess.run([sys.executable, "-c", code, str(bad), str(tmp_path / "o")],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2, res.stderr
    assert "unknown key 'sources.0.colour'" in res.stderr


# ------------------------------------------------------------------ on a Ray cluster
def _planted(tmp_path: Path) -> dict:
    """GSM8K rows over four files with planted exact and near duplicates (some with another
    answer, which must stay), leaked eval items, duplicate images and bad records."""
    rng = random.Random(7)
    rows = [json.loads(x) for x in (DATA / "gsm8k" / "train.jsonl").read_text().splitlines()][:240]
    extra = []
    for r in rng.sample(rows, 12):  # exact duplicates after case and whitespace folding
        extra.append({**r, "question": "  " + r["question"].upper().replace(" ", "  ")})
    for r in rng.sample(rows, 25):  # one word edited, same answer
        words = r["question"].split()
        words[rng.randrange(len(words))] = rng.choice(["some", "many", "the", "each"])
        extra.append({**r, "question": " ".join(words)})
    for r in rng.sample(rows, 6):  # same text but one word, another answer: another problem
        words = r["question"].split()
        words[rng.randrange(len(words))] = "seven"
        extra.append({**r, "question": " ".join(words), "answer": r["answer"] + "1"})
    mixed = rows + extra
    rng.shuffle(mixed)
    folder = tmp_path / "data"
    folder.mkdir()
    chunks = [mixed[i::3] for i in range(3)]
    for k, chunk in enumerate(chunks):
        lines = [json.dumps(r) for r in chunk]
        if k == 1:
            lines[5:5] = ['{"question": "broken', json.dumps({"question": ["not", "text"], "answer": "#### 1"})]
        (folder / f"part{k}.jsonl").write_text("\n".join(lines) + "\n")
    (folder / "part3.jsonl").write_text("")  # an empty file is quarantined, not fatal
    held = tmp_path / "held.jsonl"
    held.write_text("".join(json.dumps(r) + "\n" for r in rows[:4]))
    # images: a figure, its upscaled copy (another sha256, the same pHash) and another figure
    from PIL import Image

    img_dir = tmp_path / "mv" / "images"
    img_dir.mkdir(parents=True)
    srcs = sorted((DATA / "mathv" / "images").glob("*.jpg"))[:2]
    Image.open(srcs[0]).save(img_dir / "a.png")
    Image.open(srcs[0]).resize((Image.open(srcs[0]).width * 2, Image.open(srcs[0]).height * 2)).save(
        img_dir / "a2.png")
    Image.open(srcs[1]).save(img_dir / "b.png")
    mv = [{"question": "How many triangles are in the figure?\n<image1>", "options": [], "answer": "5",
           "subject": "counting", "image": f"images/{name}"} for name in ("a.png", "a2.png", "b.png")]
    (tmp_path / "mv" / "mv.jsonl").write_text("".join(json.dumps(r) + "\n" for r in mv))
    return {
        "name": "planted",
        "sources": [{"path": str(folder), "preset": "gsm8k"},
                    {"path": str(tmp_path / "mv" / "mv.jsonl"), "preset": "mathv"}],
        "eval_sets": [{"name": "held", "path": str(held), "preset": "gsm8k"}],
        "stages": [{"stage": "length_bounds", "min_prompt_chars": 16},
                   {"stage": "dedup_exact"},
                   {"stage": "dedup_near", "shingle_size": 3, "threshold": 0.8},
                   {"stage": "dedup_images"},
                   {"stage": "decontaminate", "ngram": 8}],
        "output": {"shard_rows": 70},
    }


@pytest.mark.ray
def test_planted_duplicates_and_bad_records_match_the_local_engine(tmp_path, ray_cluster):
    m = _both(_planted(tmp_path), tmp_path)
    drops = {s["stage"]: s["dropped"] for s in m["stages"]}
    assert drops["dedup_exact"] == {"exact_duplicate": 12}
    assert drops["dedup_near"]["near_duplicate"] >= 20
    assert drops["dedup_images"] == {"near_duplicate_image": 1}
    assert drops["decontaminate"] == {"contaminated_ngram": 4}
    near = next(s for s in m["stages"] if s["stage"] == "dedup_near")
    assert near["info"]["clusters_split_by_answer"] >= 1  # the other-answer copies stay
    assert m["quarantined"] == 3 and m["balanced"]
    dropped = pl.read_parquet(tmp_path / "ray" / "audit" / "dropped.parquet")
    near_rows = dropped.filter(pl.col("drop_reason") == "near_duplicate")
    assert near_rows["duplicate_of"].null_count() == 0
    assert near_rows["similarity"].min() >= 0.8


@pytest.mark.ray
def test_the_math_example_matches_the_local_engine(tmp_path, ray_cluster):
    m = _both(EXAMPLES / "curate_math.toml", tmp_path)
    assert m["rows_out"] == 1430


@pytest.mark.ray
@pytest.mark.skipif(not SHARED.exists(), reason="../shared/data is not present")
def test_the_shared_example_matches_the_local_engine(tmp_path, ray_cluster):
    m = _both(EXAMPLES / "curate_shared.toml", tmp_path)
    assert m["records_in"] == 12777 and m["output"]["clusters"] is not None


@pytest.mark.ray
def test_bad_input_through_the_ray_engine(tmp_path, ray_cluster):
    missing = {"sources": [{"path": str(tmp_path / "nope.jsonl"), "preset": "gsm8k"}]}
    with pytest.raises(DataError, match="sources\\[0\\] gsm8k: .*nope.jsonl"):
        run_curation(missing, tmp_path / "a", progress=False, engine="ray")
    src = tmp_path / "x.jsonl"
    src.write_text('{"question": "What is 2+2?", "answer": "#### 4"}\n{"question": 3\n')
    no_col = {"sources": [{"path": str(src), "preset": "gsm8k"}],
              "stages": [{"stage": "dedup_near", "text_col": "body"}]}
    with pytest.raises(DataError, match=r"stages\[0\] \(dedup_near\): .*missing column.*'body'"):
        run_curation(no_col, tmp_path / "b", progress=False, engine="ray")
    ok = {**no_col, "stages": [{"stage": "dedup_exact"}]}
    m = run_curation(ok, tmp_path / "c", progress=False, engine="ray")
    q = pl.read_parquet(tmp_path / "c" / "audit" / "quarantine.parquet")
    assert m["quarantined"] == 1 and q["line"].to_list() == [2] and q["file"][0] == str(src)
    # nothing survives: every row quarantined, or every row dropped by the first stage
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"q": 1}\n{broken\n')
    stages = [{"stage": "unverifiable"}, {"stage": "dedup_exact"}, {"stage": "dedup_near"}]
    for name, path, first in (("q", bad, []), ("d", src, [{"stage": "length_bounds",
                                                             "min_prompt_chars": 100}])):
        (tmp_path / name).mkdir()
        m = _both({"sources": [{"path": str(path), "preset": "gsm8k"}], "stages": first + stages},
                  tmp_path / name)
        assert m["rows_out"] == 0 and m["balanced"]
