-- Many jobs in one statement. The jobs arrive as one JSON array of objects: psycopg dumps
-- Python lists into array literals in pure Python, which cost more than the INSERT itself
-- at 50,000 jobs, while one JSON text is built by C code and parsed by the server once.
-- The statement text never changes, so it is prepared once. One notification per due
-- queue, delivered at COMMIT.
WITH inserted AS (
    INSERT INTO pgq.jobs (queue, task, args, priority, run_at, max_attempts, unique_key)
    SELECT j.queue, j.task, j.args, j.priority,
           coalesce(j.run_at, now() + make_interval(secs => j.delay)), j.max_attempts,
           j.unique_key
    FROM ROWS FROM (
        jsonb_to_recordset(%(jobs)s::jsonb) AS (
            queue text, task text, args jsonb, priority smallint, run_at timestamptz,
            delay float8, max_attempts int, unique_key text
        )
    ) WITH ORDINALITY AS j(queue, task, args, priority, run_at, delay, max_attempts,
                           unique_key, ord)
    ORDER BY j.ord
    ON CONFLICT (unique_key) WHERE state IN ('queued', 'running') AND unique_key IS NOT NULL
        DO NOTHING
    RETURNING id, queue, run_at
), notified AS (
    SELECT pg_notify('pgq', queue)
    FROM (SELECT DISTINCT queue FROM inserted WHERE run_at <= now()) AS due
)
SELECT id, (SELECT count(*) FROM notified) AS notified FROM inserted ORDER BY id
