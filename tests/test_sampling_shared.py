"""Evidence shared across prompts: the group hierarchy, empirical Bayes, predictions, new
sampler options (skip_flat, max_staleness) and calibration."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from sampling import SampleStats, StoreParams, ThompsonSampler, UniformSampler, make_sampler
from sampling.calibration import expected_calibration_error, replay_predictions
from sampling.groups import fit_prompt_strength


def _reference_posterior(prior, dom, ev_s, ev_f, last, dmean, p: StoreParams, t: int):
    """The store's posterior before sharing existed, written out independently."""
    known = ~np.isnan(prior)
    p0 = np.where(known, prior, dmean[dom])
    m = np.where(known, p.prior_strength, p.domain_prior_strength)
    dt = np.maximum(t - np.maximum(last, 0), 0).astype(float)
    if p.slow_half_life is not None:
        p0 = p0 + (1 - 2.0 ** (-dt / p.slow_half_life)) * (dmean[dom] - p0)
    g = 2.0 ** (-dt / p.fast_half_life) if p.fast_half_life is not None else 1.0
    return 1 + m * p0 + ev_s * g, 1 + m * (1 - p0) + ev_f * g


def test_sharing_off_is_the_per_prompt_posterior_exactly():
    rng = np.random.default_rng(3)
    n = 300
    diff = np.where(rng.random(n) < 0.3, rng.random(n), np.nan)
    dom = rng.integers(0, 3, n)
    level = rng.integers(1, 4, n).astype(str)
    table = pa.table({"id": [f"s{i}" for i in range(n)], "domain": [f"d{d}" for d in dom],
                      "difficulty": pa.array(diff, from_pandas=True), "level": level})
    plain = SampleStats.from_samples(table)
    with_keys = SampleStats.from_samples(table, group_keys=("level",))  # keys, but share off
    step_of = {}
    for t in range(1, 40):
        ids = [f"s{i}" for i in rng.choice(n, 12, replace=False) for _ in range(4)]
        r = rng.random(len(ids)).round(1)
        for s in (plain, with_keys):
            s.update(ids, r, step=t)
        step_of.update(dict.fromkeys(ids, t))
    for t in (39, 60, 400):
        a, b = plain.posterior(step=t)
        np.testing.assert_array_equal(a, with_keys.posterior(step=t)[0])
        ev_s, ev_f = plain.evidence()
        ra, rb = _reference_posterior(diff, dom, ev_s, ev_f, plain.last_step(), plain.domain_mean(),
                                      plain.params, t)
        np.testing.assert_allclose(a, ra, rtol=1e-12)
        np.testing.assert_allclose(b, rb, rtol=1e-12)


def _two_level_store(**kw) -> SampleStats:
    ids = [f"e{i}" for i in range(20)] + [f"h{i}" for i in range(20)]
    table = pa.table({"id": ids, "domain": ["math"] * 40,
                      "meta": ['{"level": 1}'] * 20 + ['{"level": 2}'] * 20})
    return SampleStats.from_samples(table, share=True, group_keys=("level",), **kw)


def test_unseen_predictions_move_with_their_groups_evidence():
    # drift correction off: this checks the group evidence alone (drift has its own test)
    s = _two_level_store(prompt_strength=4.0, drift_correction=False)
    before, _ = s.predict(["e19", "h19"], step=1)
    assert before[0] == pytest.approx(before[1])  # nothing seen: both are the domain's prior
    s.update([f"e{i}" for i in range(5) for _ in range(8)], [1.0] * 40, step=1)
    s.update([f"h{i}" for i in range(5) for _ in range(8)], [0.0] * 40, step=1)
    up, sd = s.predict(["e19", "h19"], step=2)
    assert up[0] > 0.75 and up[1] < 0.25  # unseen prompts follow their own level
    assert (sd > 0).all()
    # the easy level turns hard (new easy prompts fail): the unseen easy prompt follows
    for t in range(3, 18):
        s.update([f"e{t}"] * 8, [0.0] * 8, step=t)
    down, _ = s.predict(["e19"], step=18)
    assert down[0] < 0.25
    # revisits do not move the group: a sampler picks them for their evidence
    before = s.predict(["e18"], step=18)[0][0]
    s.update(["e0"] * 8, [1.0] * 8, step=19)
    assert s.predict(["e18"], step=19)[0][0] == pytest.approx(before, abs=0.02)


def test_group_evidence_decays_with_its_half_life():
    s = _two_level_store(group_half_life=10.0, prompt_strength=4.0)
    s.update(["e0"] * 8, [1.0] * 8, step=1)
    lvl = s.groups.n_levels - 1
    row = s.rows(["e0"])
    code = s.groups.codes[lvl][row][0]
    assert s.groups.n[lvl][code] == pytest.approx(8.0)
    s.update(["h0"] * 8, [0.0] * 8, step=11)  # the easy group decays to step 11 in the update
    assert s.groups.n[lvl][code] == pytest.approx(4.0)
    assert s.groups.s[lvl][code] == pytest.approx(4.0)
    # at read time too: the easy level's pull weakens as its evidence ages
    near = s.predict(["e19"], step=11)[0][0]
    far = s.predict(["e19"], step=200)[0][0]
    assert near > far


def test_prompt_strength_is_fitted_by_empirical_bayes():
    rng = np.random.default_rng(0)
    n = 3000
    truth = rng.beta(0.3 * 3.0, 0.7 * 3.0, size=n)  # m = 3 around 0.3
    s = SampleStats([f"q{i}" for i in range(n)], share=True, fast_half_life=None,
                    slow_half_life=None, group_half_life=None)
    ids = [f"q{i}" for i in range(n) for _ in range(8)]
    s.update(ids, (rng.random((n, 8)) < truth[:, None]).astype(float).reshape(-1), step=1)
    assert s.prompt_strength() == pytest.approx(3.0, rel=0.2)
    assert s.params.prompt_strength is None
    # polarized prompts (always or never solved) fit a small strength: their own evidence counts
    x = np.array([8.0] * 50 + [0.0] * 50)
    assert fit_prompt_strength(x, np.full(100, 8.0), np.full(100, 0.5)) < 0.2


def test_prompt_strength_from_group_sums_equals_the_fit_over_prompts(tmp_path):
    # the store keeps decayed per-group sums of first groups; the fit over every
    # prompt's first group (recent ones weighing more) must come out the same
    rng = np.random.default_rng(5)
    s = _two_level_store(group_half_life=7.0)
    ids = s.ids.tolist()
    for t in range(1, 13):
        for _ in range(2):  # two rounds a step, as fill mode does
            pick = rng.choice(len(ids), 6, replace=False)
            s.update([ids[i] for i in pick for _ in range(8)],
                     (rng.random(48) < 0.4).astype(float), step=t)
    rows = np.flatnonzero(~np.isnan(s._first_mean))
    mu = s.groups.leaf_means(rows, s.step, 7.0, s.params.group_strength)
    w = np.exp2(-(s.step - s._first_step[rows]) / 7.0)
    n = s._first_n[rows]
    direct = fit_prompt_strength(s._first_mean[rows] * n, n, mu, weights=w)
    assert s.prompt_strength() == pytest.approx(direct, rel=1e-9)
    # a snapshot keeps the sums bit for bit; one without them rebuilds them
    loaded = SampleStats.load(s.save(tmp_path / "a"))
    assert loaded.prompt_strength() == s.prompt_strength()
    loaded._rebuild_moments()
    assert loaded.prompt_strength() == pytest.approx(direct, rel=1e-9)


def test_save_load_with_sharing_gives_identical_next_batches(tmp_path):
    s = _two_level_store()
    sampler = ThompsonSampler(s, seed=3, max_staleness=12, skip_flat=0.5)
    rng = np.random.default_rng(1)
    for t in range(1, 8):
        ids = sampler.next_batch(4, step=t)
        s.update([i for i in ids for _ in range(8)], (rng.random(32) < 0.5).astype(float), step=t)
    path = s.save(tmp_path, sampler=sampler)
    restored = SampleStats.load(path)
    assert restored.params == s.params
    np.testing.assert_array_equal(restored.posterior(step=9)[0], s.posterior(step=9)[0])
    twin = ThompsonSampler(restored, seed=99, max_staleness=12, skip_flat=0.5)
    twin.load_state_dict(SampleStats.load_sampler_state(path))
    for t in range(8, 12):
        a, b = sampler.next_batch(4, step=t), twin.next_batch(4, step=t)
        assert a == b
        r = (rng.random(32) < 0.5).astype(float)
        for st, ids in ((s, a), (restored, b)):
            st.update([i for i in ids for _ in range(8)], r, step=t)


def test_bad_store_settings_fail_with_the_setting_named():
    with pytest.raises(ValueError, match="decay_unit must be 'steps' or 'visits'"):
        StoreParams(decay_unit="weeks")
    with pytest.raises(ValueError, match="group_half_life"):
        StoreParams(group_half_life=0)
    with pytest.raises(ValueError, match="prompt_strength"):
        StoreParams(prompt_strength=-1.0)
    with pytest.raises(ValueError, match="group key 'level'.*neither"):
        SampleStats.from_samples(pa.table({"id": ["a"]}), group_keys=("level",))
    with pytest.raises(ValueError, match="need group_labels"):
        SampleStats(["a"], group_keys=("level",))
    with pytest.raises(ValueError, match="skip_flat"):
        make_sampler("uniform", SampleStats(["a"]), skip_flat=1.0)
    with pytest.raises(ValueError, match="two coverage rules"):
        ThompsonSampler(SampleStats(["a"]), coverage=0.5, max_staleness=3)


def test_skip_flat_passes_over_prompts_whose_groups_were_all_equal():
    s = SampleStats([f"p{i}" for i in range(20)])
    flat = [f"p{i}" for i in range(10)]
    s.update([i for i in flat for _ in range(4)], [1.0] * 40, step=1)
    assert s.flat_streak(s.rows(flat)).tolist() == [1] * 10
    u = UniformSampler(s, seed=0, skip_flat=0.9999)
    picked = [i for t in range(2, 4) for i in u.next_batch(5, step=t)]
    assert not set(picked) & set(flat)
    # a mixed group resets the streak
    s.update(["p0"] * 4, [1.0, 0.0, 1.0, 1.0], step=4)
    assert int(s.flat_streak(s.rows(["p0"]))[0]) == 0


def test_max_staleness_bounds_the_gap_between_picks():
    n, k, w = 40, 5, 10
    s = SampleStats([f"p{i}" for i in range(n)], difficulty=[0.5] * 5 + [0.02] * 35,
                    prior_strength=200)
    sampler = ThompsonSampler(s, seed=0, max_staleness=w)
    last = dict.fromkeys(s.ids.tolist(), 0)
    for t in range(1, 60):
        for i in sampler.next_batch(k, step=t):
            assert t - last[i] <= w, (i, t, last[i])
            last[i] = t
    assert all(t_last >= 59 - w for t_last in last.values())


def test_fill_mode_asks_for_new_prompts_within_a_step():
    s = SampleStats([f"p{i}" for i in range(10)], difficulty=[0.5] * 10, prior_strength=50)
    sampler = ThompsonSampler(s, seed=0)
    first = sampler.next_batch(4, step=1)
    s.update([i for i in first for _ in range(2)], [1.0, 0.0] * 4, step=1)  # still informative
    second = sampler.next_batch(4, step=1)
    assert not set(first) & set(second)
    assert set(sampler.next_batch(4, step=2)) & set(first)  # a new step may pick them again


def test_shared_store_is_calibrated_where_the_old_prior_is_not():
    """Replay of a log with known truth: prompts of 6 groups whose rates differ and spread."""
    rng = np.random.default_rng(7)
    n, g = 1200, 8
    group = rng.integers(0, 6, n)
    means = np.array([0.03, 0.15, 0.35, 0.55, 0.8, 0.95])[group]
    truth = rng.beta(means * 2.0, (1 - means) * 2.0)
    table = pa.table({"id": [f"q{i}" for i in range(n)], "domain": ["all"] * n,
                      "bucket": group.astype(str)})
    steps = []
    for t in range(1, 201):
        rows = rng.choice(n, 24, replace=False)
        steps.append((t, [f"q{i}" for i in rows],
                      (rng.random((24, g)) < truth[rows, None]).astype(float)))
    shared = SampleStats.from_samples(table, share=True, group_keys=("bucket",),
                                      decay_unit="visits", fast_half_life=4.0)
    old = SampleStats.from_samples(table)
    ece_shared = expected_calibration_error(*replay_predictions(shared, steps))
    ece_old = expected_calibration_error(*replay_predictions(old, steps))
    assert ece_shared <= 0.05
    assert ece_old > 2 * ece_shared


def test_store_params_round_trip_through_asdict():
    p = StoreParams(share=True, group_keys=["level", "type"], decay_unit="visits")
    assert p.group_keys == ("level", "type")
    assert StoreParams(**dataclasses.asdict(p)) == p


FIXTURE = Path(__file__).resolve().parent / "fixtures" / "calibration"


def test_quickstart_log_replays_exactly_and_is_calibrated():
    """The quickstart's own log (tests/fixtures/calibration, made by make_fixture.py):
    replayed through a store with the quickstart's settings, the predictions equal the
    sampler's logged p_estimate, and their calibration error is at most 0.05."""
    import tomllib

    import pyarrow.parquet as pq

    cfg = tomllib.loads((Path(__file__).resolve().parents[1] / "examples" / "quickstart.toml")
                        .read_text())["grpo"]
    prompts = pq.read_table(FIXTURE / "prompts.parquet")
    groups = pq.read_table(FIXTURE / "groups.parquet").to_pydict()
    g = cfg["group_size"]
    stats = SampleStats.from_samples(prompts, group_size=g, **cfg["store_args"])
    steps, start = [], 0
    step_col = groups["step"]
    while start < len(step_col):
        end = start
        while end < len(step_col) and step_col[end] == step_col[start]:
            end += 1
        k = np.array(groups["k"][start:end])
        rewards = (np.arange(g)[None, :] < k[:, None]).astype(float)
        steps.append((int(step_col[start]), groups["sample_id"][start:end], rewards))
        start = end
    pred, obs = replay_predictions(stats, steps)
    np.testing.assert_allclose(pred, np.array(groups["p_estimate"], dtype=float), atol=1e-6)
    assert expected_calibration_error(pred, obs) <= 0.05


def test_group_drift_shifts_stale_predictions_toward_what_revisits_show():
    """The policy learns between visits: prompts seen at 1/8 come back at 7/8. A prompt of
    the same group seen once at 1/8 and not since is predicted higher with drift correction."""
    ids = [f"p{i}" for i in range(40)]
    kw = {"share": True, "decay_unit": "visits", "fast_half_life": 4.0, "prompt_strength": 2.0}
    fixed, drifting = SampleStats(ids, drift_correction=False, **kw), SampleStats(ids, **kw)
    one_of_8 = [1.0] + [0.0] * 7
    for s in (fixed, drifting):
        s.update([i for i in ids for _ in range(8)], one_of_8 * 40, step=1)
        for t in range(2, 12):  # revisits of p0..p19 now mostly succeed
            s.update([f"p{i}" for i in range(20) for _ in range(8)], ([1.0] * 7 + [0.0]) * 20, step=t)
    stale = ["p30"]
    assert drifting.predict(stale, step=12)[0][0] > fixed.predict(stale, step=12)[0][0] + 0.1
    np.testing.assert_allclose(fixed.posterior(stale, step=12),
                               drifting.posterior(stale, step=12, drift=False))


def test_min_gap_spreads_picks_over_a_small_pool():
    s = SampleStats([f"p{i}" for i in range(30)], difficulty=[0.5] * 5 + [0.05] * 25,
                    prior_strength=200)
    plain, cool = ThompsonSampler(s, seed=0), ThompsonSampler(s, seed=0, min_gap=3)
    seen_plain = {i for t in range(1, 7) for i in plain.next_batch(5, step=t)}
    seen_cool = {i for t in range(1, 7) for i in cool.next_batch(5, step=t)}
    assert len(seen_plain) < 10  # the five mid-rate prompts, again and again
    assert len(seen_cool) >= 15  # the cooldown sends every other step elsewhere


def test_thinning_rolls_out_predicted_flat_prompts_less_and_weights_them_back():
    # level 0: solved every time (a flat group is near certain); level 1: half right
    t = pa.table({"id": [f"p{i}" for i in range(40)], "domain": ["x"] * 40,
                  "level": [i % 2 for i in range(40)]})
    s = SampleStats.from_samples(t, share=True, group_keys=("level",), fast_half_life=None,
                                 group_half_life=None)
    for i in range(20):
        s.update([f"p{i}"] * 8, [1.0] * 8 if i % 2 == 0 else [1.0, 0.0] * 4, step=1)
    u = UniformSampler(s, seed=0, thin_floor=0.25, thin_at=0.5, importance=True)
    acc = u.acceptance(2)
    assert np.allclose(acc[0::2], 0.25) and np.allclose(acc[1::2], 1.0)
    counts = {"flat": 0, "mixed": 0}
    for step in range(2, 202):
        rows = u.next_rows(4, step=step)
        np.testing.assert_allclose(u.last_selection["weight"], 1.0 / u.acceptance(step)[rows])
        for r in rows:
            counts["flat" if r % 2 == 0 else "mixed"] += 1
    # rolled out in proportion to acceptance: about a quarter as often
    assert 0.18 < counts["flat"] / counts["mixed"] < 0.33
    # without thinning every prompt comes once per epoch and weighs 1
    plain = UniformSampler(s, seed=0, importance=True)
    rows = plain.next_rows(40, step=2)
    assert sorted(rows.tolist()) == list(range(40))
    assert np.all(plain.last_selection["weight"] == 1.0)


def test_importance_weights_follow_the_skip_of_flat_groups():
    s = SampleStats([f"p{i}" for i in range(20)])
    s.update([f"p{i}" for i in range(5) for _ in range(4)], [0.0] * 20, step=1)
    u = UniformSampler(s, seed=1, skip_flat=0.5, importance=True)
    rows = u.next_rows(20, step=2)  # the whole pool: skipped rows fill the end
    w = dict(zip(rows.tolist(), u.last_selection["weight"].tolist(), strict=True))
    assert all(w[r] == 2.0 for r in range(5) if r in w)
    assert all(w[r] == 1.0 for r in range(5, 20))


def test_bad_thinning_settings_fail_with_the_setting_named():
    s = SampleStats(["a"])
    with pytest.raises(ValueError, match="thin_floor"):
        make_sampler("uniform", s, thin_floor=1.5)
    with pytest.raises(ValueError, match="thin_at"):
        make_sampler("uniform", s, thin_floor=0.2, thin_at=0.0)
    with pytest.raises(ValueError, match="importance"):
        make_sampler("uniform", s, importance="yes")
    with pytest.raises(ValueError, match="does not take"):
        make_sampler("thompson", s, importance=True)


def test_skip_flat_can_skip_unsolved_prompts_only():
    # under sampling at T = 1 a prompt solved 8/8 is often mixed next time, one never
    # solved rarely is: GRESO's skip, per direction
    s = SampleStats([f"p{i}" for i in range(30)])
    unsolved, solved = [f"p{i}" for i in range(10)], [f"p{i}" for i in range(10, 20)]
    s.update([i for i in unsolved for _ in range(4)], [0.0] * 40, step=1)
    s.update([i for i in solved for _ in range(4)], [1.0] * 40, step=1)
    u = UniformSampler(s, seed=0, skip_flat={"unsolved": 0.9999, "solved": 0.0})
    picked = u.next_batch(20, step=2)
    assert set(picked) == set(solved) | {f"p{i}" for i in range(20, 30)}
    np.testing.assert_allclose(u.acceptance(2)[:20], [1e-4] * 10 + [1.0] * 10)
    t = ThompsonSampler(s, seed=0, skip_flat={"unsolved": 0.9999})
    assert not set(t.next_batch(20, step=2)) & set(unsolved)
    with pytest.raises(ValueError, match="keys 'unsolved' and 'solved'"):
        UniformSampler(s, skip_flat={"hard": 0.5})
    with pytest.raises(ValueError, match="skip_flat must be in"):
        UniformSampler(s, skip_flat={"unsolved": 1.0})
