-- Prompts sampled in several steps and never solved: the sampler keeps paying for them.
-- ("several steps" is max(step) > min(step), which needs no distinct count over all rows;
-- the prompt text and the step count are looked up for the 100 rows shown only.)
WITH stuck AS (
    SELECT sample_id, count(*) AS n, max(step) AS last_step, avg(reward) AS reward_mean
    FROM rollouts
    GROUP BY sample_id
    HAVING max(step) > min(step) AND max(CAST(correct AS INTEGER)) = 0
    ORDER BY n DESC, sample_id
    LIMIT 100
)
SELECT s.sample_id, r.domain, s.n, r.steps, s.last_step, s.reward_mean, r.prompt
FROM stuck s
JOIN (SELECT sample_id, any_value(domain) AS domain, count(DISTINCT step) AS steps, any_value(prompt) AS prompt
      FROM rollouts WHERE sample_id IN (SELECT sample_id FROM stuck) GROUP BY sample_id) r USING (sample_id)
ORDER BY s.n DESC, s.sample_id
