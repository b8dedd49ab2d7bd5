-- One job of a rate-limited key, in the caller's transaction. It starts `blocked`, outside
-- the claim index; a worker's rated claim (job_claim_rated.sql) admits and claims it when
-- the key's window has room. The key's row is created with the task's limit if it is new
-- (ON CONFLICT DO NOTHING locks no existing row, so the caller's transaction holds nothing
-- a worker waits for). Unique keys as in job_insert.sql.
WITH inserted AS (
    INSERT INTO pgq.jobs (queue, task, args, priority, run_at, max_attempts, unique_key,
                          state, rate_key)
    VALUES (
        %(queue)s, %(task)s, %(args)s::jsonb, %(priority)s,
        coalesce(%(run_at)s::timestamptz, now() + make_interval(secs => %(delay)s::float8)),
        %(max_attempts)s, %(unique_key)s, 'blocked', %(rate_key)s
    )
    ON CONFLICT (unique_key) WHERE state IN ('queued', 'running') AND unique_key IS NOT NULL
        DO NOTHING
    RETURNING id, queue, rate_key
), keyed AS (
    INSERT INTO pgq.rate_limits (key, max_starts, period)
    SELECT rate_key, %(max_starts)s, %(period)s FROM inserted
    ON CONFLICT (key) DO NOTHING
)
SELECT id, CASE WHEN %(notify)s THEN pg_notify('pgq', queue) END AS notified
FROM inserted
