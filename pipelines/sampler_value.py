"""What the sampler bought: its share of informative groups against a uniform draw's.

A run only ever rolls out the prompts its sampler picked, so what uniform
sampling would have given has to be estimated. The store has an answer of its
own, the posterior chance of an informative group (`score`, averaged over the
pool), but on the quickstart it is off by about 2x: a prompt whose posterior
mean is near 1/2 after many visits scores ~0.85, while its next group is
informative ~28% of the time, because this policy's prompts flip between
all-correct and all-wrong groups from visit to visit rather than scoring half
right. So the estimate here is read off the run's own outcomes: at each
statistics snapshot, every prompt of the pool falls in a cell (posterior mean
in 10 bins x groups seen so far: 0, 1, 2-3, 4-7, 8+), and a cell is worth the
share of informative groups that the prompts the sampler actually picked from
it went on to score, in the era after the snapshot. Checked on the
quickstart: on its uniform runs it gives 1.01-1.02x (era by era within 0.03
in the first era, 0.003 after, seed 0), and from the Thompson runs of the
same seeds it estimates 0.222, 0.163 and 0.198 where the uniform runs got
0.226, 0.168 and 0.195; the store's score said 0.36-0.40.

>>> import tempfile
>>> from pipelines.demo_run import synthetic_run
>>> v = sampler_value(synthetic_run(tempfile.mkdtemp(), steps=20, n_prompts=200, batch=16))
>>> [e["snapshot_step"] for e in v["uniform_eras"]]
[0, 9, 19]
>>> 0.0 < v["uniform_expected"] < 1.0 and v["vs_uniform"] > 0
True
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipelines.query import Lake

# The cell rates, per snapshot. Groups are matched to snapshots by sample_id, so
# the lake must hold one run. Where a cell of the era after a snapshot has fewer
# than 20 groups, the cell over all eras stands in, then the mean bin alone, then
# (no group ever in the bin) the store's own chance.
UNIFORM_ESTIMATE_SQL = """
WITH g AS MATERIALIZED (
    SELECT sample_id, step, CASE WHEN "group" IS NULL THEN hash(sample_id) ELSE "group" END AS grp,
           any_value(p_estimate) AS p, CAST(min(reward) <> max(reward) AS INTEGER) AS informative
    FROM rollouts
    WHERE reward IS NOT NULL
    GROUP BY sample_id, step, grp
), snaps AS (
    SELECT DISTINCT snapshot_step AS s FROM stats
), eras AS (  -- snapshot s and the era it opens: groups drawn in (s, next snapshot]
    SELECT s, lead(s) OVER (ORDER BY s) AS next FROM snaps
), v AS MATERIALIZED (  -- each group's era (named by the snapshot that ends it) and prior visits
    SELECT g.*, snaps.s AS era,
           row_number() OVER (PARTITION BY sample_id ORDER BY step, grp) - 1 AS visits
    FROM g ASOF LEFT JOIN snaps ON g.step <= snaps.s
), b AS MATERIALIZED (
    SELECT era, least(floor(p * 10), 9)::INTEGER AS p_bin,
           CASE WHEN visits = 0 THEN 0 WHEN visits = 1 THEN 1 WHEN visits < 4 THEN 2
                WHEN visits < 8 THEN 3 ELSE 4 END AS v_bin,
           informative
    FROM v WHERE p IS NOT NULL
), cell_era AS (
    SELECT era, p_bin, v_bin, avg(informative) AS rate FROM b GROUP BY ALL HAVING count(*) >= 20
), cell AS (
    SELECT p_bin, v_bin, avg(informative) AS rate FROM b GROUP BY ALL HAVING count(*) >= 20
), bin AS (
    SELECT p_bin, avg(informative) AS rate FROM b GROUP BY ALL
), pool AS (  -- every prompt at every snapshot, with the groups it had had by then
    SELECT st.snapshot_step AS s, st.score,
           least(floor(st.alpha / (st.alpha + st.beta) * 10), 9)::INTEGER AS p_bin,
           coalesce(last.visits + 1, 0) AS n
    FROM stats st ASOF LEFT JOIN v AS last
         ON st.sample_id = last.sample_id AND st.snapshot_step >= last.step
), pool_cells AS (
    SELECT s, score, p_bin,
           CASE WHEN n = 0 THEN 0 WHEN n = 1 THEN 1 WHEN n < 4 THEN 2 WHEN n < 8 THEN 3 ELSE 4 END AS v_bin
    FROM pool
), observed AS (  -- what the sampler got in each era
    SELECT e.s, avg(g.informative) AS sampler_informative, count(*) AS groups
    FROM eras e JOIN g ON g.step > e.s AND g.step <= e.next
    GROUP BY e.s
)
SELECT pool_cells.s AS snapshot_step, any_value(eras.next) AS era_end, count(*) AS prompts,
       avg(coalesce(cell_era.rate, cell.rate, bin.rate, pool_cells.score)) AS uniform_informative,
       any_value(observed.sampler_informative) AS sampler_informative,
       any_value(observed.groups) AS groups,
       avg(pool_cells.score) AS store_score,
       avg(CAST(cell_era.rate IS NULL AS DOUBLE)) AS share_from_fallback
FROM pool_cells
JOIN eras USING (s)
LEFT JOIN cell_era ON cell_era.era = coalesce(eras.next, eras.s)
     AND cell_era.p_bin = pool_cells.p_bin AND cell_era.v_bin = pool_cells.v_bin
LEFT JOIN cell ON cell.p_bin = pool_cells.p_bin AND cell.v_bin = pool_cells.v_bin
LEFT JOIN bin ON bin.p_bin = pool_cells.p_bin
LEFT JOIN observed USING (s)
GROUP BY pool_cells.s
ORDER BY pool_cells.s
"""


def uniform_eras(lake: Lake) -> list[dict[str, Any]]:
    """Per statistics snapshot of one run (`lake`: `pipelines.query.connect(run)`):
    what a uniform draw from the whole pool would have given in the era after it
    (`uniform_informative`), what the sampler got there (`sampler_informative`, None
    after the last snapshot), and the store's own estimate (`store_score`), as
    `UNIFORM_ESTIMATE_SQL` reads them off the log."""
    from pipelines.query import LakeError

    if len(lake.runs) != 1:
        raise LakeError(f"{', '.join(map(str, lake.runs))}: the uniform estimate reads one run, "
                        f"got {len(lake.runs)}")
    rel = lake.con.sql(UNIFORM_ESTIMATE_SQL)
    return [dict(zip(rel.columns, row, strict=True)) for row in rel.fetchall()]


def sampler_value(run: str | os.PathLike | Lake) -> dict[str, Any]:
    """What the sampler bought, read from one run's logs (a run folder, or its open lake)
    with DuckDB.

    `informative_ratio`: share of the run's groups whose rewards were not all
    equal (named query `rollout_cost`). The comparison covers the eras that
    follow a snapshot (`steps_compared`, first and last step; the steps before
    the first snapshot have no pool to draw from), each weighted by its groups:
    `sampler_informative`, the sampler's share there; `uniform_expected`, the
    share a uniform draw would have given (`uniform_eras`, calibrated on the
    run's outcomes; see the module docstring); `vs_uniform`, the first over the
    second. `store_score_expected`: the store's own estimate (its posterior
    chance of an informative group over the pool), kept for comparison.
    `calibration_ece`: expected calibration error of the sampler's
    `p_estimate` against the accuracy each group then scored (10 bins; named
    query `calibration`). Without statistics snapshots every field of the
    comparison is None.
    """
    from pipelines.query import Lake, connect, run_named

    lake = run if isinstance(run, Lake) else connect(run)
    cost = run_named(lake, "rollout_cost").pl()
    inf = float(cost["informative_ratio"][0]) if cost.height else None
    eras = uniform_eras(lake) if lake.stats_files else []
    # like with like: only the eras that have groups after their snapshot, weighted by them
    covered = [e for e in eras if e["groups"]]
    n = sum(e["groups"] for e in covered)

    def mean(key: str) -> float | None:
        return sum(e[key] * e["groups"] for e in covered) / n if n else None

    got, uni = mean("sampler_informative"), mean("uniform_informative")
    cal = run_named(lake, "calibration").fetchall()
    return {"informative_ratio": inf, "sampler_informative": got, "uniform_expected": uni,
            "vs_uniform": got / uni if got is not None and uni else None,
            "store_score_expected": mean("store_score"),
            "steps_compared": [covered[0]["snapshot_step"] + 1, covered[-1]["era_end"]]
            if covered else None, "groups_compared": n, "uniform_eras": eras,
            "calibration_ece": cal[0][-1] if cal else None}


def against_uniform(value: dict[str, Any]) -> str | None:
    """The comparison of a `sampler_value` as one sentence (None without one), as
    `thresher run` and `thresher stats` print it."""
    if value["vs_uniform"] is None:
        return None
    first, last = value["steps_compared"]
    return (f"steps {first}-{last}: {value['sampler_informative']:.3f} against "
            f"~{value['uniform_expected']:.3f} for a uniform draw from the pool (read off this "
            f"run's outcomes; the store's own chance says {value['store_score_expected']:.3f}): "
            f"{value['vs_uniform']:.2f}x")
