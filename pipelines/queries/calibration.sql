-- Sampler calibration per run: groups binned (10 equal bins) by the posterior mean
-- the sampler saw when it picked them, against the accuracy the group then scored.
-- `ece` is the expected calibration error: the group-weighted mean |predicted - observed|.
-- (MATERIALIZED: inlined, the CTEs are planned once per use and the log is scanned twice.)
WITH g AS MATERIALIZED (
    SELECT run_id, step, CASE WHEN "group" IS NULL THEN hash(sample_id) ELSE "group" END AS g,
           any_value(p_estimate) AS p, avg(CAST(correct AS DOUBLE)) AS acc
    FROM rollouts
    WHERE p_estimate IS NOT NULL AND correct IS NOT NULL
    GROUP BY run_id, step, g
), b AS MATERIALIZED (
    SELECT run_id, least(floor(p * 10), 9) AS bin, count(*) AS groups,
           avg(p) AS predicted, avg(acc) AS observed
    FROM g
    GROUP BY run_id, bin
)
SELECT run_id, bin / 10 AS lo, (bin + 1) / 10 AS hi, groups, predicted, observed,
       sum(groups * abs(predicted - observed)) OVER (PARTITION BY run_id)
         / sum(groups) OVER (PARTITION BY run_id) AS ece
FROM b
ORDER BY run_id, lo
