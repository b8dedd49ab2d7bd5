-- Operator retry of chosen jobs: failed or cancelled → queued now (blocked, for a job of a
-- concurrency-limited key: it waits for a slot like a new one). attempts and errors are
-- kept, so the history stays visible; max_attempts grows to attempts + 1 when the job had
-- used them all, so it gets exactly one more attempt (and more only if it had some left).
--
-- Concurrency: the UPDATE re-checks `state IN ('failed', 'cancelled')` on the newest row
-- version after taking the row lock (READ COMMITTED), so a job that is queued, running or
-- succeeded by then is never touched. A unique key may have one live job only: a job
-- whose key is held by a queued or running job is skipped, and of several chosen jobs
-- sharing a key only the newest is retried. A job enqueued with that key by another
-- transaction after our snapshot makes this statement fail with a unique violation; the
-- caller runs it again (the new snapshot sees that job).
WITH target AS (
    SELECT id, row_number() OVER (PARTITION BY unique_key ORDER BY id DESC) AS key_rank
    FROM pgq.jobs
    WHERE id = ANY(%(ids)s::bigint[]) AND state IN ('failed', 'cancelled')
), retried AS (
    UPDATE pgq.jobs AS j
    SET state = CASE WHEN j.concurrency_key IS NULL AND j.rate_key IS NULL THEN 'queued'
                     ELSE 'blocked' END::pgq.job_state,
        run_at = coalesce(%(now)s::timestamptz, now()),
        finished_at = NULL,
        max_attempts = greatest(j.max_attempts, j.attempts + 1),
        worker_id = NULL,
        lease_expires_at = NULL,
        cancel_requested = false
    FROM target AS t
    WHERE j.id = t.id
      AND j.state IN ('failed', 'cancelled')
      AND (j.unique_key IS NULL OR (t.key_rank = 1 AND NOT EXISTS (
          SELECT 1 FROM pgq.jobs AS live
          WHERE live.unique_key = j.unique_key
            AND live.state IN ('queued', 'blocked', 'running'))))
    RETURNING j.id, j.queue, j.concurrency_key
), woken AS (
    -- A job of a concurrency-limited key goes back blocked, behind the jobs of its key
    -- that wait already; a wakeup makes the next promotion pass look at the key.
    INSERT INTO pgq.concurrency_wakeups (key, max_active)
    SELECT r.concurrency_key, coalesce(k.max_active, 1)
    FROM (SELECT DISTINCT concurrency_key FROM retried WHERE concurrency_key IS NOT NULL) AS r
    LEFT JOIN pgq.concurrency_keys AS k ON k.key = r.concurrency_key
), notified AS (
    -- One notification per queue, delivered at commit, wakes the workers.
    SELECT pg_notify('pgq', queue) FROM (SELECT DISTINCT queue FROM retried) AS due
)
SELECT id, (SELECT count(*) FROM notified) AS notified
FROM retried
ORDER BY id
