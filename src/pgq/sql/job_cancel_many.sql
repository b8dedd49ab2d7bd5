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
-- pgq:include fragment_concurrency_handover
SELECT c.id,
       CASE WHEN c.waited AND c.state = 'cancelled'  -- pgq.wait's; see job_finish_many.sql
            THEN c.state::text || pg_notify('pgq_finished', c.id::text)::text
            ELSE c.state::text END,
       (SELECT count(*) FROM notified) AS notified
FROM cancelled AS c
