-- Response length (tokens, in buckets of 10% of the longest response) against reward and accuracy.
WITH r AS (
    SELECT response_tokens AS len, reward, correct FROM rollouts WHERE response_tokens IS NOT NULL
), top AS (SELECT greatest(max(len), 1) AS m FROM r)
SELECT least(floor(len * 10.0 / top.m), 9) * top.m / 10.0 AS len_from,
       (least(floor(len * 10.0 / top.m), 9) + 1) * top.m / 10.0 AS len_to,
       count(*)                           AS responses,
       avg(reward)                        AS reward_mean,
       avg(CAST(correct AS DOUBLE))       AS accuracy
FROM r, top
GROUP BY len_from, len_to
ORDER BY len_from
