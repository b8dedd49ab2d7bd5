-- A worker's rate limits for keys it knows when it starts (a task's own name, or a fixed
-- key string): a limit changed in the code takes effect at the next deploy. Keys a function
-- computes from a job's arguments keep the limit of their first job (job_insert_rated.sql).
-- The rows written here are `synced`: the pruner never deletes them (rate_limits_prune.sql),
-- so a job enqueued by older code cannot re-create a pruned row with its older limit.
-- Rows already right are not touched; a changed one is locked for this short statement.
INSERT INTO pgq.rate_limits AS r (key, max_starts, period, synced)
SELECT k.key, k.max_starts, k.period, true
FROM unnest(%(keys)s::text[], %(max_starts)s::int[], %(periods)s::float8[])
     AS k(key, max_starts, period)
ORDER BY k.key
ON CONFLICT (key) DO UPDATE
    SET max_starts = excluded.max_starts, period = excluded.period, synced = true
    WHERE (r.max_starts, r.period, r.synced)
          IS DISTINCT FROM (excluded.max_starts, excluded.period, true)
