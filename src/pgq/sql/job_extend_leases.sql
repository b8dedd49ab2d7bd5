-- Heartbeat: extend the leases of every job still running in this worker, in one
-- statement. lease_expires_at is in no index, so these are HOT updates. A job missing from
-- RETURNING is no longer ours (its lease lapsed and it was taken back): the worker stops
-- treating it as held. cancel_requested carries an operator's cancel to the worker.
-- Rows are found by primary key (see job_finish_many.sql for why) and locked there, so the
-- fence cannot change between the check and the write.
--
-- The same round trip marks the worker seen in pgq.workers (worker_id NULL: not at all).
-- An upsert, not an UPDATE: a worker cut off for longer than its stale bound had its row
-- removed by the reaper, and comes back into the registry with its next beat. Only
-- last_seen_at and running change, neither indexed: a HOT update.
WITH seen AS (
    INSERT INTO pgq.workers AS w (id, hostname, pid, version, queues, tasks, concurrency,
                                  running, stale_after_seconds)
    SELECT %(worker_id)s::text, %(hostname)s::text, %(pid)s::integer, %(version)s::text,
           %(queues)s::text[], %(tasks)s::jsonb, %(concurrency)s::integer,
           %(running)s::integer, %(stale_after)s::float8
    WHERE %(worker_id)s::text IS NOT NULL
    ON CONFLICT (id) DO UPDATE SET last_seen_at = now(), running = excluded.running
), held AS MATERIALIZED (
    SELECT d.id, d.lease
    FROM unnest(%(ids)s::bigint[], %(tokens)s::bigint[], %(leases)s::float8[])
         AS d(id, token, lease)
    CROSS JOIN LATERAL (
        SELECT 1 FROM pgq.jobs
        WHERE id = d.id AND lease_token = d.token AND state = 'running'
        FOR UPDATE
    ) AS fenced
)
UPDATE pgq.jobs AS j
SET lease_expires_at = now() + make_interval(secs => h.lease)
FROM held AS h
WHERE j.id = h.id
RETURNING j.id, j.cancel_requested
