-- Per run and step: mean reward, accuracy, responses, mean response length.
SELECT run_id, step,
       avg(reward)                        AS reward_mean,
       avg(CAST(correct AS DOUBLE))       AS accuracy,
       count(*)                           AS responses,
       avg(response_tokens)               AS response_tokens_mean
FROM rollouts
GROUP BY run_id, step
ORDER BY run_id, step
