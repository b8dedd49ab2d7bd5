-- One job, in the caller's transaction. pg_notify is delivered at COMMIT (never before)
-- and PostgreSQL folds identical notifications of one transaction into one. A job
-- scheduled for later does not notify: the worker's poll finds it. %(notify)s is false
-- when this process notified the same queue moments ago (see enqueue.py's NotifyLimiter).
WITH inserted AS (
    INSERT INTO pgq.jobs (queue, task, args, priority, run_at, max_attempts, unique_key)
    VALUES (
        %(queue)s, %(task)s, %(args)s::jsonb, %(priority)s,
        coalesce(%(run_at)s::timestamptz, now() + make_interval(secs => %(delay)s::float8)),
        %(max_attempts)s, %(unique_key)s
    )
    ON CONFLICT (unique_key) WHERE state IN ('queued', 'running') AND unique_key IS NOT NULL
        DO NOTHING
    RETURNING id, queue, run_at
)
SELECT id, CASE WHEN %(notify)s AND run_at <= now() THEN pg_notify('pgq', queue) END
       AS notified
FROM inserted
