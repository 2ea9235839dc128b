-- What a run spent and what it kept: rollouts generated, groups, informative groups
-- (rewards not all equal) and groups that went into the update (`kept`; null in logs
-- written before fill mode or imported), per run. In fill mode a run's cost is its rollouts.
WITH g AS (
    SELECT run_id, step, CASE WHEN "group" IS NULL THEN hash(sample_id) ELSE "group" END AS g,
           count(*) AS rollouts, min(reward) < max(reward) AS informative,
           bool_or(kept) AS kept
    FROM rollouts
    GROUP BY run_id, step, g
)
SELECT run_id,
       count(DISTINCT step)                          AS steps,
       sum(rollouts)                                 AS rollouts,
       count(*)                                      AS groups,
       sum(CAST(informative AS INTEGER))             AS informative_groups,
       sum(CAST(kept AS INTEGER))                    AS kept_groups,
       avg(CAST(informative AS DOUBLE))              AS informative_ratio,
       sum(rollouts) / count(DISTINCT step)          AS rollouts_per_step
FROM g
GROUP BY run_id
ORDER BY run_id
