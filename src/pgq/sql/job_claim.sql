-- Claim up to %(limit)s due jobs of registered tasks in one statement, in claim order
-- (priority first, then run_at, then id). SKIP LOCKED lets concurrent workers take disjoint
-- rows without waiting; MATERIALIZED keeps the locking subquery from being inlined (and so
-- run more than once) into the UPDATE. attempts grows here, at claim time, so a job that
-- kills its worker still counts; lease_token grows too, and fences every later write.
-- Each task's lease comes from the worker (tasks may ask for a longer one).
WITH claimable AS MATERIALIZED (
    SELECT id
    FROM pgq.jobs
    WHERE state = 'queued'
      AND queue = ANY(%(queues)s::text[])
      AND task = ANY(%(tasks)s::text[])
      AND run_at <= coalesce(%(now)s::timestamptz, now())
    ORDER BY priority DESC, run_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE pgq.jobs AS j
SET state = 'running',
    attempts = j.attempts + 1,
    lease_token = j.lease_token + 1,
    worker_id = %(worker_id)s,
    started_at = now(),
    lease_expires_at = now() + make_interval(secs => l.lease),
    cancel_requested = false
FROM claimable AS c,
     unnest(%(tasks)s::text[], %(leases)s::float8[]) AS l(task, lease)
WHERE j.id = c.id AND l.task = j.task
RETURNING j.id, j.queue, j.task, j.args, j.attempts, j.max_attempts, j.lease_token,
          j.priority, j.run_at, j.created_at
