-- Is a prompt's next group predictable from its last ones? Per run, every group of a
-- prompt by what the prompt's previous group(s) scored: first visit, unsolved once,
-- unsolved twice in a row, solved (all correct), mixed. Where a revisit is rarely
-- informative (unsolved twice), GRESO's skip (`skip_flat`) saves rollouts; where it
-- often is, skipping costs groups the update would have kept.
WITH g AS (
    SELECT run_id, sample_id, step, CASE WHEN "group" IS NULL THEN hash(sample_id) ELSE "group" END AS g,
           sum(CAST(correct AS INTEGER)) AS k, count(*) AS n
    FROM rollouts
    WHERE correct IS NOT NULL
    GROUP BY run_id, sample_id, step, g
), v AS (
    SELECT run_id, k, n, lag(k) OVER w AS k1, lag(k, 2) OVER w AS k2, lag(n) OVER w AS n1
    FROM g
    WINDOW w AS (PARTITION BY run_id, sample_id ORDER BY step, g)
), c AS (
    SELECT run_id,
           CASE WHEN k1 IS NULL THEN 'first visit'
                WHEN k1 = 0 AND k2 = 0 THEN 'unsolved twice'
                WHEN k1 = 0 THEN 'unsolved once'
                WHEN k1 = n1 THEN 'solved'
                ELSE 'mixed' END AS last,
           k > 0 AND k < n AS informative
    FROM v
)
SELECT run_id, last, count(*) AS groups,
       count(*) / sum(count(*)) OVER (PARTITION BY run_id) AS share_of_groups,
       avg(CAST(informative AS DOUBLE)) AS informative
FROM c
GROUP BY run_id, last
ORDER BY run_id, last
