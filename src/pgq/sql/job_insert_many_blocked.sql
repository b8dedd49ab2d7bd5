-- enqueue_many for a batch holding jobs of concurrency- or rate-limited keys:
-- job_insert_many.sql with each job's concurrency key and limit, and rate key and limit
-- (null for a job without one). Limited jobs start `blocked`; a concurrency key gets one
-- wakeup per batch (see job_insert_blocked.sql), a new rate key its row (see
-- job_insert_rated.sql); the others are inserted `queued` as job_insert_many.sql does.
WITH inserted AS (
    INSERT INTO pgq.jobs (queue, task, args, priority, run_at, max_attempts, unique_key,
                          state, concurrency_key, rate_key)
    SELECT j.queue, j.task, j.args, j.priority,
           coalesce(j.run_at, now() + make_interval(secs => j.delay)), j.max_attempts,
           j.unique_key,
           CASE WHEN j.concurrency_key IS NULL AND j.rate_key IS NULL THEN 'queued'
                ELSE 'blocked' END::pgq.job_state,
           j.concurrency_key, j.rate_key
    FROM ROWS FROM (
        jsonb_to_recordset(%(jobs)s::jsonb) AS (
            queue text, task text, args jsonb, priority smallint, run_at timestamptz,
            delay float8, max_attempts int, unique_key text, concurrency_key text,
            concurrency_limit int, rate_key text, max_starts int, period float8
        )
    ) WITH ORDINALITY AS j(queue, task, args, priority, run_at, delay, max_attempts,
                           unique_key, concurrency_key, concurrency_limit, rate_key,
                           max_starts, period, ord)
    ORDER BY j.ord
    ON CONFLICT (unique_key) WHERE state IN ('queued', 'running') AND unique_key IS NOT NULL
        DO NOTHING
    RETURNING id, queue, run_at, state, concurrency_key
), limits AS (
    SELECT DISTINCT ON (concurrency_key) concurrency_key, concurrency_limit
    FROM jsonb_to_recordset(%(jobs)s::jsonb) AS l(concurrency_key text, concurrency_limit int)
    WHERE concurrency_key IS NOT NULL
), woken AS (
    INSERT INTO pgq.concurrency_wakeups (key, max_active)
    SELECT l.concurrency_key, l.concurrency_limit
    FROM limits AS l
    WHERE l.concurrency_key IN (SELECT concurrency_key FROM inserted)
), rates AS (
    INSERT INTO pgq.rate_limits (key, max_starts, period)
    SELECT DISTINCT ON (r.rate_key) r.rate_key, r.max_starts, r.period
    FROM jsonb_to_recordset(%(jobs)s::jsonb) AS r(rate_key text, max_starts int, period float8)
    WHERE r.rate_key IS NOT NULL
    ORDER BY r.rate_key
    ON CONFLICT (key) DO NOTHING
), notified AS (
    SELECT pg_notify('pgq', queue)
    FROM (SELECT DISTINCT queue FROM inserted WHERE run_at <= now() OR state = 'blocked') AS due
)
SELECT id, (SELECT count(*) FROM notified) AS notified FROM inserted ORDER BY id
