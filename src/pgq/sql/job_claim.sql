-- Claim up to %(limit)s due jobs of registered tasks in one statement, in claim order
-- (priority first, then run_at, then id).
--
-- Each queue is read by its own LATERAL subquery with `queue = q` (an equality), so it is an
-- ordered scan of jobs_claim_idx that stops after LIMIT rows: with `queue = ANY(...)` the
-- planner must fetch and sort every due row of every queue on each claim, which made
-- claiming cost grow with the backlog. SKIP LOCKED lets concurrent workers take disjoint
-- rows without waiting; rows a subquery locked but the outer LIMIT drops are unlocked when
-- the statement's transaction ends. MATERIALIZED keeps the locking part from being inlined
-- (and run more than once) into the UPDATE.
--
-- attempts grows here, at claim time, so a job that kills its worker still counts;
-- lease_token grows too, and fences every later write about the job. Each task's lease
-- comes from the worker (a task may ask for a longer one): leases[i] is tasks[i]'s.
--
-- The worker runs this with a generic plan (session_generic_plans.sql): a custom plan was
-- made at every claim, 0.5-0.7 ms of a 1.0-1.5 ms claim. So that plan must not depend on
-- the parameters' values: the claimed rows are updated through `id = ANY(ARRAY(...))`, an
-- index lookup of each id, where a join against the CTE let the generic plan hash-join a
-- scan of the whole table.
WITH claimable AS MATERIALIZED (
    SELECT c.id
    FROM unnest(%(queues)s::text[]) AS q(queue)
    CROSS JOIN LATERAL (
        SELECT id, priority, run_at
        FROM pgq.jobs
        WHERE state = 'queued'
          AND queue = q.queue
          AND task = ANY(%(tasks)s::text[])
          AND run_at <= coalesce(%(now)s::timestamptz, now())
        ORDER BY priority DESC, run_at, id
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    ) AS c
    ORDER BY c.priority DESC, c.run_at, c.id
    LIMIT %(limit)s
)
UPDATE pgq.jobs AS j
SET state = 'running',
    attempts = j.attempts + 1,
    lease_token = j.lease_token + 1,
    worker_id = %(worker_id)s,
    started_at = now(),
    lease_expires_at = now() + make_interval(
        secs => (%(leases)s::float8[])[array_position(%(tasks)s::text[], j.task)]),
    cancel_requested = false
WHERE j.id = ANY(ARRAY(SELECT id FROM claimable))
RETURNING j.id, j.queue, j.task, j.args, j.attempts, j.max_attempts, j.lease_token,
          j.priority, j.run_at, j.created_at,
          extract(epoch FROM now() - j.run_at)::float8 AS lag_seconds
