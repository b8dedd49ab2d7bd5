-- Complete one job inside the task's own transaction (ctx.transaction()), just before that
-- transaction commits: the job's succeeded, its result and the task's own writes (children
-- it enqueued included) commit together or not at all.
--
-- Fenced like every write about a job: by the lease token of this attempt and state =
-- 'running'. No row back means the lease is no longer ours (the reaper took the job back,
-- another worker claimed it, or the worker released it): the caller rolls the whole
-- transaction back, so a stale attempt commits nothing.
--
-- The row is locked from this statement to the COMMIT that follows at once, never while
-- the task runs, so the worker's heartbeat (which locks the same row to extend the lease)
-- waits a round trip at most, and cannot deadlock with this transaction: it takes no lock
-- this transaction waits for. If the heartbeat holds the row first, this waits for it and
-- then re-reads the row; a heartbeat changes neither the token nor the state.
--
-- statement_timestamp(), not now(): now() is when the task's transaction began.
--
-- A job of a concurrency-limited key hands its slot to the next blocked job of its key in
-- this statement, as job_finish_limited.sql does; the key's row stays locked until the
-- COMMIT that follows. For a job without a key those CTEs find nothing to do.
WITH completed AS (
    UPDATE pgq.jobs
    SET state = 'succeeded',
        finished_at = statement_timestamp(),
        result = %(result)s::jsonb,
        lease_expires_at = NULL,
        cancel_requested = false
    WHERE id = %(job_id)s AND lease_token = %(token)s AND state = 'running'
    RETURNING id, state, waited, concurrency_key
), freed AS (
    SELECT concurrency_key AS key, count(*)::int AS n
    FROM completed
    WHERE concurrency_key IS NOT NULL AND state IN ('succeeded', 'failed', 'cancelled')
    GROUP BY concurrency_key
-- pgq:include fragment_concurrency_handover
SELECT c.id,
       CASE WHEN c.waited  -- a notification for pgq.wait; see job_finish_many.sql
            THEN c.state::text || pg_notify('pgq_finished', c.id::text)::text
            ELSE c.state::text END
FROM completed AS c
WHERE (SELECT count(*) FROM notified) >= 0  -- runs the NOTIFY; the rows stay (id, state)
