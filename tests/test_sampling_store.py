"""SampleStats: exact posteriors, priors, decay, Welford moments, bad input, persistence."""

from __future__ import annotations

import subprocess
import sys

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sampling import STATS_COLUMNS, SampleStats, make_sampler

NO_DECAY = {"fast_half_life": None, "slow_half_life": None}


def _table(n=20, seed=0, domains=("math", "chart")):
    rng = np.random.default_rng(seed)
    diff = rng.uniform(0, 1, n)
    diff[::3] = np.nan
    return pa.table({
        "id": [f"s{i:03d}" for i in range(n)],
        "domain": [domains[i % len(domains)] for i in range(n)],
        "difficulty": pa.array(diff, mask=np.isnan(diff)),
    })


def _state(stats: SampleStats) -> pa.Table:
    return stats.to_arrow(raw=True)


def test_exact_count_posterior_without_decay_matches_a_dict_reference():
    stats = SampleStats.from_samples(_table(), prior_strength=4, domain_prior_strength=2, **NO_DECAY)
    rng = np.random.default_rng(1)
    ref = {}  # id -> [sum r, sum 1 - r]
    for step in range(1, 6):
        ids = list(rng.choice(stats.ids, 24))
        rewards = rng.choice([0.0, 0.25, 1.0], 24)
        stats.update(ids, rewards, step=step)
        for i, r in zip(ids, rewards, strict=True):
            s, f = ref.setdefault(i, [0.0, 0.0])
            ref[i] = [s + r, f + 1 - r]
    a, b = stats.posterior(None)
    prior_a, prior_b = SampleStats.from_samples(_table(), prior_strength=4, domain_prior_strength=2,
                                                **NO_DECAY).posterior(None)
    known = ~np.isnan(_table().column("difficulty").to_numpy(zero_copy_only=False))
    for row, sid in enumerate(stats.ids):
        s, f = ref.get(sid, [0.0, 0.0])
        if known[row]:  # a known-difficulty prior never moves: posterior = prior + counts, exactly
            assert a[row] == pytest.approx(prior_a[row] + s, abs=1e-12)
            assert b[row] == pytest.approx(prior_b[row] + f, abs=1e-12)
        # whatever the prior, the evidence part is the exact count
        assert stats._ev_s[row] == pytest.approx(s, abs=1e-12)
        assert stats._ev_f[row] == pytest.approx(f, abs=1e-12)


def test_fractional_rewards_count_fractionally():
    stats = SampleStats(["a"], difficulty=[0.5], prior_strength=2, **NO_DECAY)
    stats.update(["a", "a", "a"], [0.25, 0.5, 1.0], step=1)
    a, b = stats.posterior(["a"])
    assert (a[0], b[0]) == (1 + 1 + 1.75, 1 + 1 + 1.25)
    t = stats.to_arrow()
    assert t.column("n_seen").to_pylist() == [3]
    assert t.column("n_correct").to_pylist() == [2]  # reward >= 0.5
    assert t.column("reward_mean").to_pylist()[0] == pytest.approx(1.75 / 3)
    assert t.column("reward_var").to_pylist()[0] == pytest.approx(np.var([0.25, 0.5, 1.0]))


def test_welford_moments_match_numpy_over_many_updates():
    stats = SampleStats(["a", "b"])
    rng = np.random.default_rng(3)
    seen = {"a": [], "b": []}
    for step in range(1, 9):
        ids = list(rng.choice(["a", "b"], 7))
        r = rng.random(7)
        lengths = rng.integers(10, 100, 7)
        stats.update(ids, r, step=step, lengths=lengths)
        for i, x, ln in zip(ids, r, lengths, strict=True):
            seen[i].append((x, ln))
    t = stats.to_arrow().to_pydict()
    for row, sid in enumerate(["a", "b"]):
        xs = np.array([x for x, _ in seen[sid]])
        assert t["reward_mean"][row] == pytest.approx(xs.mean(), abs=1e-12)
        assert t["reward_var"][row] == pytest.approx(xs.var(), abs=1e-12)
        assert t["len_mean"][row] == pytest.approx(np.mean([ln for _, ln in seen[sid]]))
        assert t["last_step"][row] == 8 or len(xs) == 0


def test_priors_from_difficulty_else_domain_mean_else_half():
    t = pa.table({"id": ["k", "u", "o"], "domain": ["m", "m", "other"],
                  "difficulty": [0.8, None, None]})
    stats = SampleStats.from_samples(t, prior_strength=10, domain_prior_strength=4, **NO_DECAY)
    a, b = stats.posterior(["k", "u", "o"])
    assert (a[0], b[0]) == pytest.approx((1 + 8, 1 + 2))      # 1 + m p, 1 + m (1 - p)
    assert (a[1], b[1]) == pytest.approx((1 + 4 * 0.8, 1 + 4 * 0.2))  # domain mean of known
    assert (a[2], b[2]) == pytest.approx((3, 3))                 # nothing known: 0.5
    # the domain mean moves with observed rewards: (0.8 + 0 + 0) / 3
    stats.update(["k", "k"], [0.0, 0.0], step=1)
    a, _ = stats.posterior(["u"])
    assert a[0] == pytest.approx(1 + 4 * (0.8 / 3))


def test_polars_frame_and_sample_id_column_are_accepted():
    df = pl.DataFrame({"sample_id": ["a", "b"], "domain": ["x", None], "difficulty": [0.1, None]})
    stats = SampleStats.from_samples(df)
    assert list(stats.ids) == ["a", "b"] and stats.domains == ["default", "x"]


def test_fast_decay_halves_evidence_per_half_life_lazily():
    stats = SampleStats(["a", "b"], difficulty=[0.5, 0.5], prior_strength=2, fast_half_life=10,
                        slow_half_life=None)
    stats.update(["a"] * 8, [1.0] * 8, step=5)
    ev_before = stats._ev_s.copy()
    a5, _ = stats.posterior(["a"], step=5)
    a15, b15 = stats.posterior(["a"], step=15)
    a25, _ = stats.posterior(["a"], step=25)
    assert a5[0] == pytest.approx(2 + 8)
    assert a15[0] == pytest.approx(2 + 4)      # one half-life later
    assert a25[0] == pytest.approx(2 + 2)      # two
    assert b15[0] == pytest.approx(2)
    # reading at a later step touched nothing: decay is applied from last_step
    np.testing.assert_array_equal(stats._ev_s, ev_before)
    # an update at step 15 first decays the old evidence, then adds the new
    stats.update(["a"] * 2, [0.0, 0.0], step=15)
    a, b = stats.posterior(["a"], step=15)
    assert (a[0], b[0]) == pytest.approx((2 + 4, 2 + 2))


def test_slow_decay_pulls_long_unseen_priors_toward_the_domain_mean():
    stats = SampleStats(["easy", "hard"], domains=["m", "m"], difficulty=[0.9, 0.1],
                        prior_strength=10, slow_half_life=20, fast_half_life=None)
    assert stats.mean(["easy"], step=0)[0] == pytest.approx(10 / 12)
    # after one slow half-life the prior sits halfway to the domain mean (0.5)
    p0 = 0.9 + 0.5 * (0.5 - 0.9)
    assert stats.mean(["easy"], step=20)[0] == pytest.approx((1 + 10 * p0) / 12)
    # far in the future both forget their curated difficulty
    far = stats.mean(["easy", "hard"], step=10_000)
    assert far == pytest.approx([0.5, 0.5], abs=1e-6)
    # a fresh update restarts the clock for that sample only
    stats.update(["easy"], [1.0], step=10_000)
    assert stats.mean(["easy"], step=10_000)[0] > stats.mean(["hard"], step=10_000)[0]


def test_decay_off_equals_the_exact_posterior_and_decay_on_differs():
    ids, rewards = ["a"] * 6, [1, 1, 0, 1, 0.5, 1]
    off = SampleStats(["a"], difficulty=[0.3], **NO_DECAY)
    on = SampleStats(["a"], difficulty=[0.3], fast_half_life=5, slow_half_life=50)
    for s in (off, on):
        s.update(ids[:3], rewards[:3], step=1)
        s.update(ids[3:], rewards[3:], step=11)
    a, b = off.posterior(["a"], step=40)
    assert (a[0], b[0]) == pytest.approx((1 + 4 * 0.3 + 4.5, 1 + 4 * 0.7 + 1.5))
    a2, b2 = on.posterior(["a"], step=40)
    assert a2[0] < a[0] and b2[0] < b[0]


def test_informative_prob_is_the_posterior_expectation():
    stats = SampleStats(["a"], difficulty=[0.5], prior_strength=1e9)
    # a near-certain p = 0.5: 1 - 2 * 0.5^8
    assert stats.informative_prob(["a"])[0] == pytest.approx(1 - 2 * 0.5**8, rel=1e-6)
    flat = SampleStats(["b"], difficulty=[0.5], prior_strength=0)  # Beta(1, 1): E[p^8] = 1/9
    assert flat.informative_prob(["b"])[0] == pytest.approx(1 - 2 / 9)


def test_diversity_from_responses():
    stats = SampleStats(["a", "b"])
    stats.update(["a", "a", "b", "b"], [1, 0, 1, 1], step=1,
                 responses=["x y z", "x y z", "one two", "three four"])
    div = stats.to_arrow().column("diversity").to_pylist()
    assert div == [0.5, 1.0]


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda s: s.update(["s000", "nope"], [1.0, 0.0], step=1), "unknown sample id.*'nope'"),
        (lambda s: s.update(["s000", "s001"], [1.0, float("nan")], step=1), "entry 1.*s001.*nan"),
        (lambda s: s.update(["s000", "s001"], [1.0, 1.5], step=1), r"entry 1.*1\.5.*\[0, 1\]"),
        (lambda s: s.update(["s000", "s001"], [1.0, -0.1], step=1), r"entry 1.*-0\.1"),
        (lambda s: s.update(["s000", "s001"], [1.0], step=1), "rewards has 1 entries but sample_ids has 2"),
        (lambda s: s.update(["s000"], [1.0], step=1, lengths=[3, 4]), "lengths has 2 entries"),
        (lambda s: s.update(["s000"], [1.0], step=1, responses=["a", "b"]), "responses has 2"),
        (lambda s: s.update(["s000"], [1.0], step=-1), "step must be an int >= 0"),
        (lambda s: s.update(["s000"], [1.0], step=1), "before sample 's000'"),
    ],
)
def test_bad_input_names_the_problem_and_leaves_the_store_unchanged(call, match):
    stats = SampleStats.from_samples(_table())
    stats.update(["s000", "s001"] * 4, [1.0, 0.0] * 4, step=2, lengths=[5] * 8)
    before = _state(stats)
    with pytest.raises((ValueError, KeyError), match=match):
        call(stats)
    assert _state(stats).equals(before)
    assert stats.step == 2


def test_bad_samples_table_names_row_and_column():
    with pytest.raises(ValueError, match="difficulty.*row 1.*'b'"):
        SampleStats.from_samples(pa.table({"id": ["a", "b"], "difficulty": [0.2, 1.3]}))
    with pytest.raises(ValueError, match="'a' is on rows 0 and 2"):
        SampleStats.from_samples(pa.table({"id": ["a", "b", "a"]}))
    with pytest.raises(ValueError, match="'id'"):
        SampleStats.from_samples(pa.table({"prompt": ["x"]}))
    with pytest.raises(ValueError, match="row 1 is null"):
        SampleStats.from_samples(pa.table({"id": ["a", None]}))


def test_to_arrow_has_the_design_columns_and_duckdb_reads_it():
    stats = SampleStats.from_samples(_table())
    stats.update(["s000"] * 4 + ["s001"] * 4, [1, 0, 1, 0, 0, 0, 0, 0], step=3)
    t = stats.to_arrow()
    assert tuple(t.column_names) == STATS_COLUMNS
    got = duckdb.sql("SELECT sample_id, n_seen, last_step FROM t WHERE n_seen > 0 ORDER BY 1").fetchall()
    assert got == [("s000", 4, 3), ("s001", 4, 3)]
    assert t.column("last_step").null_count == len(stats) - 2


def test_save_load_round_trip_is_exact(tmp_path):
    stats = SampleStats.from_samples(_table(), fast_half_life=7, slow_half_life=30)
    rng = np.random.default_rng(0)
    for step in range(1, 4):
        ids = list(rng.choice(stats.ids, 16))
        stats.update(ids, rng.random(16), step=step, lengths=rng.integers(1, 9, 16),
                     responses=[f"r {k}" for k in range(16)])
    path = stats.save(tmp_path / "snap.parquet")
    back = SampleStats.load(path)
    assert back.params == stats.params and back.step == stats.step
    assert back.to_arrow(raw=True).equals(stats.to_arrow(raw=True))
    assert back.to_arrow(step=50).equals(stats.to_arrow(step=50))
    # both keep going identically
    for s in (stats, back):
        s.update(["s005"] * 3, [1, 0, 1], step=9)
    assert back.to_arrow(raw=True).equals(stats.to_arrow(raw=True))
    assert [p.name for p in tmp_path.iterdir()] == ["snap.parquet"]  # no temp file left


def test_restore_replaces_the_contents_in_place(tmp_path):
    stats = SampleStats.from_samples(_table())
    stats.update(["s000"] * 4, [1, 1, 0, 1], step=2)
    path = stats.save(tmp_path / "snap.parquet")
    live = SampleStats.from_samples(_table())  # e.g. the store a sampler was built on
    sampler = make_sampler("thompson", live, group_size=4, seed=0)
    assert live.restore(path) is live and sampler.stats is live
    assert live.to_arrow(raw=True).equals(stats.to_arrow(raw=True)) and live.step == 2
    # a snapshot of other ids is refused and leaves the store as it was
    other = SampleStats.from_samples(pa.table({"id": ["x", "y"]}))
    with pytest.raises(ValueError, match="other sample ids"):
        other.restore(path)
    assert other.ids.tolist() == ["x", "y"] and other.step == 0


def test_save_into_a_run_dir_uses_the_layout(tmp_path):
    stats = SampleStats.from_samples(_table())
    stats.update(["s000"], [1.0], step=12)
    path = stats.save(tmp_path)
    assert path == tmp_path / "stats" / "stats-00000012.parquet"
    assert pq.read_table(path).num_rows == 20


def test_load_rejects_a_foreign_parquet(tmp_path):
    pq.write_table(pa.table({"a": [1]}), tmp_path / "x.parquet")
    with pytest.raises(ValueError, match="not a SampleStats snapshot"):
        SampleStats.load(tmp_path / "x.parquet")


def test_sampling_imports_without_torch():
    code = "import sys, sampling; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_prior_group_caches_follow_updates():
    n = 4200
    diff = np.where(np.arange(n) % 3 == 0, 0.25, np.nan)
    stats = SampleStats([f"s{i}" for i in range(n)], domains=["a", "b"] * (n // 2), difficulty=diff)
    pg = stats.prior_groups()
    assert stats.seen_rows().tolist() == []
    rng = np.random.default_rng(0)
    for step in range(1, 6):
        ids = [f"s{i}" for i in rng.integers(0, n, 200)]
        stats.update(ids, rng.random(200), step=step)
    assert stats.seen_rows().tolist() == np.flatnonzero(stats._n_seen > 0).tolist()
    for gi, (_, rows) in enumerate(pg.groups):
        assert pg.fresh[gi] == int((stats._n_seen[rows] == 0).sum())
    # groups: (domain, prior) pairs; a: 700 at 0.25 + 1400 unknown, b: likewise
    assert sorted(len(r) for _, r in pg.groups) == [1400, 1400]
    assert len(pg.small_rows) == 1400  # the two 700-row difficulty groups are below the minimum


def test_from_samples_reads_a_sample_schema_table():
    from curate.schema import SAMPLE_SCHEMA, conform

    t = conform(pa.table({"id": ["a", "b"], "domain": ["geo", "alg"], "prompt": ["p", "q"],
                          "difficulty": [0.75, None]}), SAMPLE_SCHEMA)
    stats = SampleStats.from_samples(t)
    assert stats.domains == ["alg", "geo"]
    assert stats.mean(["a"])[0] == pytest.approx((1 + 4 * 0.75) / 6)
    with pytest.raises(ValueError, match="column 'difficulty': expected pass rates"):
        SampleStats.from_samples(pa.table({"id": ["a"], "difficulty": ["hard"]}))
