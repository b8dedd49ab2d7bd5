-- Many jobs in one statement: every column arrives as one array parameter, so the
-- statement text never changes and is prepared once. One notification per due queue.
WITH inserted AS (
    INSERT INTO pgq.jobs (queue, task, args, priority, run_at, max_attempts, unique_key)
    SELECT queue, task, args::jsonb, priority,
           coalesce(run_at, now() + make_interval(secs => delay)), max_attempts, unique_key
    FROM unnest(
        %(queues)s::text[], %(tasks)s::text[], %(args)s::text[], %(priorities)s::smallint[],
        %(run_ats)s::timestamptz[], %(delays)s::float8[], %(max_attempts)s::int[],
        %(unique_keys)s::text[]
    ) WITH ORDINALITY AS j(queue, task, args, priority, run_at, delay, max_attempts,
                           unique_key, ord)
    ORDER BY ord
    ON CONFLICT (unique_key) WHERE state IN ('queued', 'running') DO NOTHING
    RETURNING id, queue, run_at
), notified AS (
    SELECT pg_notify('pgq', queue)
    FROM (SELECT DISTINCT queue FROM inserted WHERE run_at <= now()) AS due
)
SELECT id, (SELECT count(*) FROM notified) AS notified FROM inserted ORDER BY id
