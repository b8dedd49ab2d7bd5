-- One job of a concurrency-limited key, in the caller's transaction. It starts `blocked`,
-- outside the claim index; a worker's promotion pass (concurrency_keys_unblock.sql) makes
-- it `queued` when its key has a free slot. The wakeup row tells that pass which key to
-- look at: enqueue only ever inserts, so the caller's transaction holds no lock a worker
-- could wait for, however long it stays open. The NOTIFY (at COMMIT) wakes a worker to
-- run the pass. Unique keys as in job_insert.sql (the unique index covers blocked jobs).
WITH inserted AS (
    INSERT INTO pgq.jobs (queue, task, args, priority, run_at, max_attempts, unique_key,
                          state, concurrency_key)
    VALUES (
        %(queue)s, %(task)s, %(args)s::jsonb, %(priority)s,
        coalesce(%(run_at)s::timestamptz, now() + make_interval(secs => %(delay)s::float8)),
        %(max_attempts)s, %(unique_key)s, 'blocked', %(concurrency_key)s
    )
    ON CONFLICT (unique_key) WHERE state IN ('queued', 'running') AND unique_key IS NOT NULL
        DO NOTHING
    RETURNING id, queue, concurrency_key
), woken AS (
    INSERT INTO pgq.concurrency_wakeups (key, max_active)
    SELECT concurrency_key, %(concurrency_limit)s FROM inserted
)
SELECT id, CASE WHEN %(notify)s THEN pg_notify('pgq', queue) END AS notified
FROM inserted
