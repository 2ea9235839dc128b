-- Per prompt: rollouts, pass rate, mean reward, when it was seen. Hardest first.
SELECT
    sample_id,
    any_value(domain)                        AS domain,
    count(*)                                 AS n,
    sum(CAST(correct AS INTEGER))            AS n_correct,
    avg(CAST(correct AS DOUBLE))             AS pass_rate,
    avg(reward)                              AS reward_mean,
    min(step)                                AS first_step,
    max(step)                                AS last_step
FROM rollouts
GROUP BY sample_id
ORDER BY pass_rate, n DESC, sample_id
