-- Per run, step and domain: mean reward and accuracy.
SELECT run_id, step, domain,
       avg(reward)                        AS reward_mean,
       avg(CAST(correct AS DOUBLE))       AS accuracy,
       count(*)                           AS responses
FROM rollouts
GROUP BY run_id, step, domain
ORDER BY run_id, domain, step
