-- Per run and step: the share of groups whose rewards are not all equal
-- (a GRPO group with zero reward variance has zero advantage: no learning signal).
WITH groups AS (
    SELECT run_id, step, CASE WHEN "group" IS NULL THEN hash(sample_id) ELSE "group" END AS g,
           min(reward) < max(reward) AS informative
    FROM rollouts
    GROUP BY run_id, step, g
)
SELECT run_id, step,
       count(*)                               AS groups,
       sum(CAST(informative AS INTEGER))      AS informative_groups,
       avg(CAST(informative AS DOUBLE))       AS informative_ratio
FROM groups
GROUP BY run_id, step
ORDER BY run_id, step
