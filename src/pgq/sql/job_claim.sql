-- Claim up to %(limit)s due jobs of registered tasks in one statement, in claim order
-- (priority first, then run_at, then id).
--
-- Each queue is read by its own LATERAL subquery with `queue = q` (an equality), so it is an
-- ordered scan of jobs_claim_idx that stops after LIMIT rows: with `queue = ANY(...)` the
-- planner must fetch and sort every due row of every queue on each claim, which made
-- claiming cost grow with the backlog.
--
-- Within a queue, each priority the queue holds is read by a scan of its own, bounded by
-- `run_at <= now` in the index (queue, priority, run_at): jobs scheduled for later are never
-- read. The priorities come from `levels`, which walks the index from one priority to the
-- next lower one (one index probe each; PostgreSQL 15 has no skip scan). One scan over all
-- priorities could not stop at the first job scheduled for later, because a due job of a
-- lower priority may follow it: a claim that found fewer due jobs than it asked for (an
-- idle worker's every claim) read every scheduled job of the queue, 44-80 ms per claim
-- beside 1,000,000 jobs due tomorrow, against 0.3-1.7 ms now. A queue holding many
-- priorities costs one probe per priority on every claim.
--
-- SKIP LOCKED lets concurrent workers take disjoint rows without waiting; rows a subquery
-- locked but the outer LIMIT drops (another queue's, or a lower priority's) are unlocked
-- when the statement's transaction ends. MATERIALIZED keeps the locking part from being
-- inlined (and run more than once) into the UPDATE.
--
-- attempts grows here, at claim time, so a job that kills its worker still counts;
-- lease_token grows too, and fences every later write about the job. Each task's lease
-- comes from the worker (a task may ask for a longer one): leases[i] is tasks[i]'s.
-- has_dependents tells the worker to write this job's outcome with
-- job_finish_release_many.sql, which releases the jobs waiting for it; a plain job's goes
-- through job_finish_many.sql, which reads no dependency.
--
-- `limited` tells the worker to write the outcome of a job of a concurrency-limited key with
-- job_finish_limited.sql, which hands its slot on; jobs a limit holds back are `blocked`,
-- never in this statement's index, so nothing here depends on limits.
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
        WITH RECURSIVE levels(priority) AS (
            (SELECT priority FROM pgq.jobs
             WHERE state = 'queued' AND queue = q.queue
             ORDER BY priority DESC
             LIMIT 1)
            UNION ALL
            SELECT (SELECT j.priority FROM pgq.jobs AS j
                    WHERE j.state = 'queued' AND j.queue = q.queue AND j.priority < l.priority
                    ORDER BY j.priority DESC
                    LIMIT 1)
            FROM levels AS l
            WHERE l.priority IS NOT NULL
        )
        SELECT priority FROM levels WHERE priority IS NOT NULL
    ) AS level
    CROSS JOIN LATERAL (
        SELECT id, priority, run_at
        FROM pgq.jobs
        WHERE state = 'queued'
          AND queue = q.queue
          AND priority = level.priority
          AND run_at <= coalesce(%(now)s::timestamptz, now())
          AND task = ANY(%(tasks)s::text[])
        ORDER BY run_at, id
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
          extract(epoch FROM now() - j.run_at)::float8 AS lag_seconds, j.has_dependents,
          j.concurrency_key IS NOT NULL AS limited
