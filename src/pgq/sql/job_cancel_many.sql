-- Operator cancel in one statement: a queued or blocked job (or one waiting for its parents
-- in a workflow) is cancelled now; a running job is asked to stop (cancel_requested; the
-- worker holding it reads the flag at its next heartbeat and writes the outcome). Jobs in
-- any other state are left alone.
--
-- Concurrency: the rows are locked first, and FOR UPDATE reads each at its newest version
-- (READ COMMITTED): a job a worker claimed between our snapshot and our lock takes the
-- running branch instead of being missed, and one finished by then no longer matches and
-- is not touched. Returns each job's state after the statement: 'cancelled', or 'running'
-- for a cancel request. The caller then runs job_release_dependents.sql in the same
-- transaction for the jobs cancelled here.
--
-- A cancelled queued job of a concurrency-limited key held a slot: it goes to the next
-- blocked job of its key in this statement, as in job_finish_limited.sql. A blocked job
-- held none.
WITH target AS MATERIALIZED (
    SELECT id, state AS was
    FROM pgq.jobs
    WHERE id = ANY(%(ids)s::bigint[]) AND state IN ('queued', 'blocked', 'waiting', 'running')
    ORDER BY id
    FOR UPDATE
), cancelled AS (
    UPDATE pgq.jobs AS j
    SET state = CASE WHEN t.was = 'running' THEN j.state ELSE 'cancelled' END::pgq.job_state,
        finished_at = CASE WHEN t.was = 'running' THEN j.finished_at
                           ELSE coalesce(%(now)s::timestamptz, now()) END,
        parents_pending = CASE WHEN t.was = 'waiting' THEN NULL ELSE j.parents_pending END,
        cancel_requested = (t.was = 'running')
    FROM target AS t
    WHERE j.id = t.id
    RETURNING j.id, j.state, t.was, j.concurrency_key, j.waited
), freed AS (
    SELECT concurrency_key AS key, count(*)::int AS n
    FROM cancelled
    WHERE concurrency_key IS NOT NULL AND was = 'queued'
    GROUP BY concurrency_key
), slots AS MATERIALIZED (
    SELECT k.key, k.max_active, greatest(k.active - f.n, 0) AS active, k.waiting
    FROM pgq.concurrency_keys AS k
    JOIN freed AS f ON f.key = k.key
    ORDER BY k.key
    FOR UPDATE OF k
), next AS MATERIALIZED (
    SELECT b.id
    FROM slots AS s
    CROSS JOIN LATERAL (
        SELECT id FROM pgq.jobs
        WHERE state = 'blocked' AND concurrency_key = s.key
        ORDER BY id
        LIMIT greatest(s.max_active - s.active, 0)
        FOR UPDATE SKIP LOCKED
    ) AS b
), promoted AS (
    UPDATE pgq.jobs AS j
    SET state = 'queued'
    FROM next
    WHERE j.id = next.id
    RETURNING j.queue, j.concurrency_key
), counted AS (
    UPDATE pgq.concurrency_keys AS k
    SET active = s.active + p.n,
        waiting = greatest(s.waiting - p.n, 0)
    FROM slots AS s
    CROSS JOIN LATERAL (
        SELECT count(*)::int AS n FROM promoted WHERE concurrency_key = s.key
    ) AS p
    WHERE k.key = s.key
    RETURNING k.key, k.max_active, k.active, k.waiting
), rewoken AS (
    INSERT INTO pgq.concurrency_wakeups (key, max_active)
    SELECT key, max_active FROM counted WHERE waiting > 0 AND active < max_active
), notified AS (
    SELECT pg_notify('pgq', queue) FROM (SELECT DISTINCT queue FROM promoted) AS due
)
SELECT c.id,
       CASE WHEN c.waited AND c.state = 'cancelled'  -- pgq.wait's; see job_finish_many.sql
            THEN c.state::text || pg_notify('pgq_finished', c.id::text)::text
            ELSE c.state::text END,
       (SELECT count(*) FROM notified) AS notified
FROM cancelled AS c
