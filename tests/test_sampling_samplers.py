"""Samplers: selection behaviour, determinism by seed, quotas, exact resume."""

from __future__ import annotations

import pickle
from collections import Counter

import numpy as np
import pyarrow as pa
import pytest

from sampling import (
    CurriculumSampler,
    FilterSampler,
    SampleStats,
    ThompsonSampler,
    TorchBatchSampler,
    UniformSampler,
    VarianceAwareSampler,
    largest_remainder,
    make_sampler,
)

N = 200
TRUE_P = np.random.default_rng(7).uniform(0, 1, N)
TRUE_P[:60] = 0.0   # never solved
TRUE_P[60:100] = 1.0  # always solved

CONFIGS = [
    ("uniform", {}),
    ("thompson", {}),
    ("thompson", {"pool_factor": 3}),
    ("thompson", {"coverage": 0.8, "coverage_window": 5, "temperature": 0.0}),
    ("thompson", {"coverage": 0.8, "coverage_window": 5, "temperature": 0.0, "predictive": True}),
    ("variance", {}),
    ("variance", {"pool_factor": 4}),
    ("filter", {}),
    ("curriculum", {"mode": "target"}),
    ("curriculum", {"mode": "staged", "stage_steps": 3}),
    ("thompson", {"weights": {"math": 0.75, "chart": 0.25}}),
    ("uniform", {"weights": {"math": 0.5, "chart": 0.5}}),
]


def _stats(**kw):
    t = pa.table({"id": [f"s{i:03d}" for i in range(N)],
                  "domain": ["math" if i % 4 else "chart" for i in range(N)]})
    return SampleStats.from_samples(t, **kw)


def _rollouts(stats, ids, step, seed=0, g=8):
    rng = np.random.default_rng([seed, step])
    rows = stats.rows(ids)
    rewards = (rng.random((len(ids), g)) < TRUE_P[rows, None]).astype(float)
    return [i for i in ids for _ in range(g)], rewards.reshape(-1)


def _run(sampler, steps, start=1, k=16):
    out = []
    for t in range(start, start + steps):
        ids = sampler.next_batch(k, step=t)
        out.append(list(ids))
        flat, r = _rollouts(sampler.stats, ids, t)
        sampler.stats.update(flat, r, step=t)
    return out


@pytest.mark.parametrize("name, kw", CONFIGS)
def test_batches_are_distinct_known_ids_with_selection_info(name, kw):
    stats = _stats()
    s = make_sampler(name, stats, group_size=8, seed=0, **kw)
    for t in range(1, 4):
        ids = s.next_batch(16, step=t)
        want = 32 if name == "filter" else 16  # filter over-samples 2x by default
        assert len(ids) == want and len(set(ids)) == want
        sel = s.last_selection
        assert sel["sample_id"] == ids and sel["step"] == t
        assert len(sel["p_estimate"]) == want and len(sel["score"]) == want
        assert np.all((sel["p_estimate"] > 0) & (sel["p_estimate"] < 1))
        stats.rows(ids)  # all known
        flat, r = _rollouts(stats, ids, t)
        stats.update(flat, r, step=t)


@pytest.mark.parametrize("name, kw", CONFIGS)
def test_same_seed_same_batches_other_seed_differs(name, kw):
    a = _run(make_sampler(name, _stats(), seed=3, **kw), 5)
    b = _run(make_sampler(name, _stats(), seed=3, **kw), 5)
    c = _run(make_sampler(name, _stats(), seed=4, **kw), 5)
    assert a == b
    if not (name == "curriculum" and kw.get("mode") == "target"):
        assert a != c  # (a target curriculum is nearly deterministic by design)


@pytest.mark.parametrize("name, kw", CONFIGS)
@pytest.mark.parametrize("via", ["snapshot", "state_dict"])
def test_resume_mid_run_gives_identical_next_batches(tmp_path, name, kw, via):
    store_kw = {"fast_half_life": 5, "slow_half_life": 20}
    full = make_sampler(name, _stats(**store_kw), seed=11, **kw)
    expected = _run(full, 8)

    first = make_sampler(name, _stats(**store_kw), seed=11, **kw)
    got = _run(first, 4)
    if via == "snapshot":  # sampler state inside the Parquet metadata
        path = first.stats.save(tmp_path, sampler=first)
        stats = SampleStats.load(path)
        resumed = make_sampler(name, stats, seed=999, **kw)  # the seed must not matter now
        resumed.load_state_dict(SampleStats.load_sampler_state(path))
    else:  # the trainer's way: stats snapshot + pickled state_dict (torch.save)
        path = first.stats.save(tmp_path / "stats.parquet")
        state = pickle.loads(pickle.dumps(first.state_dict()))
        resumed = make_sampler(name, _stats(**store_kw), seed=999, **kw)
        resumed.stats = SampleStats.load(path)
        resumed.load_state_dict(state)
    got += _run(resumed, 4, start=5)
    assert got == expected


def test_load_state_dict_rejects_another_samplers_state():
    with pytest.raises(ValueError, match="'uniform', not 'thompson'"):
        ThompsonSampler(_stats()).load_state_dict(UniformSampler(_stats()).state_dict())


def test_uniform_covers_every_sample_once_per_epoch_without_repeats():
    s = UniformSampler(_stats(), seed=0)
    batches = [s.next_batch(30, step=t) for t in range(1, 21)]  # 600 = 3 epochs
    flat = [i for b in batches for i in b]
    assert all(len(set(b)) == 30 for b in batches)  # also across epoch boundaries
    for e in range(3):
        assert len(set(flat[e * N:(e + 1) * N])) == N
    assert s.epoch == 3


def test_thompson_picks_informative_prompts_once_it_has_evidence():
    stats = _stats()
    th = ThompsonSampler(stats, seed=0)
    # show every prompt once
    for t, start in enumerate(range(0, N, 50), start=1):
        ids = list(stats.ids[start:start + 50])
        flat, r = _rollouts(stats, ids, t)
        stats.update(flat, r, step=t)
    rows = stats.rows(th.next_batch(40, step=5))
    p = TRUE_P[rows]
    assert np.mean((p > 0) & (p < 1)) > 0.9  # vs 100/200 = 0.5 at random
    assert np.all(np.diff(th.last_selection["score"]) <= 0)  # best first


def test_thompson_coverage_guarantee_holds_in_every_window():
    stats = _stats()
    th = ThompsonSampler(stats, seed=0, temperature=0.0, coverage=0.8, coverage_window=5)
    plain = ThompsonSampler(_stats(), seed=0, temperature=0.0)
    for s in (th, plain):
        windows = [set() for _ in range(4)]
        for t in range(1, 21):
            ids = s.next_batch(40, step=t)  # 5 x 40 = 200 = N: 80% is reachable
            flat, r = _rollouts(s.stats, ids, t)
            s.stats.update(flat, r, step=t)
            windows[(t - 1) // 5].update(ids)
        cover = [len(w) / N for w in windows]
        if s is th:
            assert min(cover) >= 0.8
        else:
            assert min(cover) < 0.8  # greedy alone re-rolls the same prompts


def test_quotas_fill_each_domain_by_largest_remainder():
    stats = _stats()
    s = ThompsonSampler(stats, seed=0, weights={"math": 2, "chart": 1})
    ids = s.next_batch(10, step=1)
    dom = Counter(stats.domains[c] for c in stats.domain_codes[stats.rows(ids)])
    assert dom == {"math": 7, "chart": 3}
    assert largest_remainder(10, [2, 1]).tolist() == [7, 3]
    with pytest.raises(ValueError, match="unknown domain.*'code'"):
        UniformSampler(stats, weights={"code": 1.0})


def test_quota_capacity_overflow_goes_to_other_domains():
    stats = _stats()  # 50 chart, 150 math
    s = UniformSampler(stats, seed=0, weights={"chart": 0.9, "math": 0.1})
    ids = s.next_batch(100, step=1)
    dom = Counter(stats.domains[c] for c in stats.domain_codes[stats.rows(ids)])
    assert dom == {"chart": 50, "math": 50}


def test_variance_sampler_prefers_high_variance_prompts():
    stats = _stats(prior_strength=4)
    for t, start in enumerate(range(0, N, 50), start=1):
        ids = list(stats.ids[start:start + 50])
        flat, r = _rollouts(stats, ids, t)
        stats.update(flat, r, step=t)
    vs = VarianceAwareSampler(stats, seed=0, lam=1.0, w_diversity=0.0)
    rows = np.concatenate([stats.rows(vs.next_batch(20, step=5 + i)) for i in range(10)])
    p = TRUE_P[rows]
    assert np.mean((p > 0) & (p < 1)) > 0.8
    uni = VarianceAwareSampler(stats, seed=0, lam=0.0)
    rows = np.concatenate([stats.rows(uni.next_batch(20, step=5 + i)) for i in range(10)])
    assert np.mean((TRUE_P[rows] > 0) & (TRUE_P[rows] < 1)) < 0.7


def test_filter_sampler_drops_zero_variance_groups_and_counts_waste():
    f = FilterSampler(_stats(), group_size=4, oversample=1.5, seed=0)
    ids = f.next_batch(10, step=1)
    assert len(ids) == 15
    rewards = np.zeros((15, 4))
    rewards[:5, 0] = 1.0                  # 5 informative groups
    rewards[5:8] = 1.0                    # 3 all-correct
    keep = f.filter_groups(ids, rewards.reshape(-1))
    assert keep.tolist() == [True] * 5 + [False] * 10
    assert (f.wasted_rollouts, f.total_rollouts, f.groups_dropped) == (40, 60, 10)
    with pytest.raises(ValueError, match="expected 15 groups x group_size 4"):
        f.filter_groups(ids, np.zeros(7))


def test_curriculum_target_moves_against_the_observed_reward():
    stats = _stats()
    cs = CurriculumSampler(stats, seed=0, mode="target", target=0.5, eta=0.1)
    ids = cs.next_batch(10, step=1)
    stats.update([i for i in ids for _ in range(8)], [1.0] * 80, step=1)  # far too easy
    cs.next_batch(10, step=2)
    assert cs.p_target < 0.5  # aims at harder prompts now
    before = cs.p_target
    ids = cs.last_selection["sample_id"]
    stats.update([i for i in ids for _ in range(8)], [0.0] * 80, step=2)  # far too hard
    cs.next_batch(10, step=3)
    assert cs.p_target > before


def test_curriculum_staged_moves_easy_to_hard():
    t = pa.table({"id": [f"s{i}" for i in range(30)],
                  "difficulty": np.repeat([0.9, 0.5, 0.1], 10)})
    stats = SampleStats.from_samples(t, prior_strength=50)
    cs = CurriculumSampler(stats, seed=0, mode="staged", stage_steps=10)
    p_at = {}
    for step in (1, 11, 21, 35):
        rows = cs.next_rows(5, step=step)
        p_at[step] = float(np.mean(t.column("difficulty").to_numpy()[rows]))
    assert p_at[1] == pytest.approx(0.9) and p_at[11] == pytest.approx(0.5)
    assert p_at[21] == pytest.approx(0.1) and p_at[35] == pytest.approx(0.1)
    assert cs.stage == 2


def test_make_sampler_errors_name_the_problem():
    with pytest.raises(ValueError, match="unknown sampler 'best'.*thompson"):
        make_sampler("best", _stats())
    with pytest.raises(ValueError, match=r"does not take \['lam'\]"):
        make_sampler("thompson", _stats(), lam=0.5)
    with pytest.raises(ValueError, match="batch of 500 asked from a store of 200"):
        UniformSampler(_stats()).next_batch(500, step=1)


def test_torch_batch_sampler_feeds_a_dataloader():
    import torch

    stats = _stats()
    data = torch.arange(N)
    bs = TorchBatchSampler(UniformSampler(stats, seed=0), batch_size=50, num_steps=4)
    loader = torch.utils.data.DataLoader(data, batch_sampler=bs)
    got = torch.cat(list(loader))
    assert sorted(got.tolist()) == list(range(N))


def test_exact_thompson_on_shared_prior_groups_matches_drawing_every_row():
    """The O(k) draw for never-seen rows has the distribution of drawing all of them."""
    from scipy import stats as sps

    from sampling.samplers import _informative

    n, k = 6000, 16
    stats = SampleStats([f"s{i}" for i in range(n)])
    rng = np.random.default_rng(0)
    seen = [f"s{i}" for i in range(300)]
    stats.update([i for i in seen for _ in range(8)], (rng.random(2400) < 0.3).astype(float), step=1)
    fast_kth, fast_fresh, brute_kth, brute_fresh = [], [], [], []
    a, b = stats.posterior(None, 2)
    for seed in range(300):
        th = ThompsonSampler(stats, seed=seed)
        rows = th.next_rows(k, step=2)
        fast_kth.append(th.last_selection["score"].min())
        fast_fresh.append(np.mean(rows >= 300))
        draw = _informative(np.random.default_rng(10_000 + seed).beta(a, b), 8)
        top = np.sort(draw)[-k:]
        brute_kth.append(top[0])
        brute_fresh.append(np.mean(np.argsort(draw)[-k:] >= 300))
    assert sps.ks_2samp(fast_kth, brute_kth).pvalue > 1e-3
    assert abs(np.mean(fast_fresh) - np.mean(brute_fresh)) < 0.03


def test_predictive_greedy_ranks_well_measured_samples_first_and_scores_the_probability():
    # no prior pull, no decay: alpha = 1 + successes, beta = 1 + failures
    stats = SampleStats(["once", "often", "never", "solved"], fast_half_life=None,
                        slow_half_life=None, domain_prior_strength=0.0)
    half = [1.0] * 4 + [0.0] * 4
    stats.update(["once"] * 8, half, step=1)
    for t in range(1, 21):
        stats.update(["often"] * 8, half, step=t)
    stats.update(["solved"] * 8, [1.0] * 8, step=1)
    # plug-in: Beta(5, 5), Beta(81, 81) and the unseen Beta(1, 1) all have mean 1/2,
    # so greedy on the mean cannot tell them apart (a coin flip among the three)
    firsts = {ThompsonSampler(stats, seed=s, temperature=0.0).next_batch(1, step=21)[0]
              for s in range(30)}
    assert firsts == {"once", "often", "never"}
    pred = ThompsonSampler(stats, seed=0, temperature=0.0, predictive=True)
    ids = pred.next_batch(4, step=21)
    assert ids == ["often", "once", "never", "solved"]
    want = stats.informative_prob(ids, step=21)
    assert np.allclose(pred.last_selection["score"], want, atol=1e-8)
    assert want[0] > 0.98 and want[2] == pytest.approx(1 - 2 / 9)  # 160 responses vs none


def test_predictive_needs_greedy_and_a_bool():
    with pytest.raises(ValueError, match="temperature=0"):
        ThompsonSampler(_stats(), predictive=True)
    with pytest.raises(ValueError, match="True or False"):
        ThompsonSampler(_stats(), temperature=0.0, predictive="yes")
    s = make_sampler("thompson", _stats(), temperature=0.0, predictive=True)
    assert s.predictive is True


def test_predictive_scores_on_shared_prior_groups_equal_the_store_probability():
    """The O(k) path for never-seen rows of one prior gives them the store's score too."""
    n = 3000
    stats = SampleStats([f"s{i}" for i in range(n)])
    rng = np.random.default_rng(1)
    seen = [f"s{i}" for i in range(100)]
    stats.update([i for i in seen for _ in range(8)], (rng.random(800) < 0.1).astype(float),
                 step=1)
    th = ThompsonSampler(stats, seed=0, temperature=0.0, predictive=True)
    rows = th.next_rows(300, step=2)
    assert (rows >= 100).any()  # unseen rows (prior group shortcut) made the batch
    assert np.allclose(th.last_selection["score"], stats.informative_prob(rows, step=2),
                       atol=1e-8)
    # best first, and nothing left out scores higher than the last one taken
    assert np.all(np.diff(th.last_selection["score"]) <= 1e-8)
    rest = np.setdiff1d(np.arange(n), rows)
    assert stats.informative_prob(rest, step=2).max() <= th.last_selection["score"].min() + 1e-8


def test_distance_quantiles_match_bisection_also_before_the_support():
    """A tempered center outside [0, 1] leaves a stretch of zero density before the
    support; Newton alone stalled there (0.004 off). The search must bisect out of it."""
    from scipy import stats as sps

    from sampling.betadist import distance_quantiles_many, smallest_uniforms

    rng = np.random.default_rng(0)
    a = np.array([39.2, 27.6, 2.0, 0.5, 8.0])
    b = np.array([2.4, 3.9, 5.0, 0.7, 8.0])
    c = np.array([1.44, 1.46, -0.3, 0.5, 0.2])
    us = [smallest_uniforms(30_000, 40, rng) for _ in a]
    got = distance_quantiles_many(a, b, us, c)
    for i in range(len(a)):
        def cdf(d, i=i):
            return sps.beta.cdf(c[i] + d, a[i], b[i]) - sps.beta.cdf(c[i] - d, a[i], b[i])
        for u, d in zip(us[i], got[i], strict=True):
            lo, hi = 0.0, max(abs(c[i]), abs(1 - c[i]))
            for _ in range(80):
                mid = (lo + hi) / 2
                lo, hi = (mid, hi) if cdf(mid) < u else (lo, mid)
            assert abs(d - hi) < 1e-9, (i, u, d, hi)


def test_smallest_uniforms_many_gives_each_groups_draws_from_one_call():
    """The batched draw must equal drawing group by group from the same generator,
    both when every group asks for the same k (one table) and when they differ, so
    that a seeded run picks the same prompts as before it was batched."""
    from sampling.betadist import smallest_uniforms, smallest_uniforms_many

    for ms, ks in (([10**6, 5000, 700], [64, 64, 64]), ([10**6, 40, 9], [64, 64, 3])):
        rng = np.random.default_rng(7)
        one = [smallest_uniforms(m, k, rng) for m, k in zip(ms, ks, strict=True)]
        after_one = rng.random()
        rng = np.random.default_rng(7)
        many = smallest_uniforms_many(ms, ks, rng)
        assert [len(x) for x in many] == [min(m, k) for m, k in zip(ms, ks, strict=True)]
        assert all(np.array_equal(x, y) for x, y in zip(one, many, strict=True))
        assert rng.random() == after_one  # the generator is left where the loop leaves it
        assert all(np.all(np.diff(x) > 0) for x in many)


def test_pool_weights_stratify_by_domain_so_no_domain_is_starved():
    """weights="pool": each domain gets its pool share of the batch, even one that
    looks hopeless (never solved) and that Thompson alone would skip."""
    ids = [f"h{i}" for i in range(200)] + [f"e{i}" for i in range(600)]
    stats = SampleStats(ids, domains=["hard"] * 200 + ["easy"] * 600)
    rng = np.random.default_rng(0)
    seen = ids[:100] + ids[200:500]
    rewards = [0.0] * 800 + (rng.random(2400) < 0.5).astype(float).tolist()
    stats.update([i for i in seen for _ in range(8)], rewards, step=1)
    free = ThompsonSampler(stats, seed=0).next_batch(40, step=2)
    strat = ThompsonSampler(stats, seed=0, weights="pool").next_batch(40, step=2)
    assert sum(i.startswith("h") for i in strat) == 10  # 200 / 800 of 40
    assert sum(i.startswith("h") for i in free) < 10
    with pytest.raises(ValueError, match='"pool"'):
        ThompsonSampler(stats, weights="pol")
