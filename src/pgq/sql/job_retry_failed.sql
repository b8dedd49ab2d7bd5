-- One batch of `pgq retry --failed`: the next `limit` failed jobs after `after_id` (keyset
-- pagination by id, so every batch is a short transaction and the run always ends), with
-- optional queue and task filters (NULL = any), go back to queued now. Same rules as
-- job_retry_many.sql: attempts and errors kept, max_attempts raised to attempts + 1 if
-- used up, a unique key held by a live job skips the job.
--
-- The rows are locked (FOR UPDATE re-checks state = 'failed' on the newest version) before
-- they are updated. Returns the last id the batch looked at (the next after_id), how many
-- rows it picked (0: the run is over), how many it retried, and the retried jobs others
-- wait for in a workflow (the caller resumes those with job_restore_dependents.sql).
WITH picked AS MATERIALIZED (
    SELECT id, unique_key
    FROM pgq.jobs
    WHERE state = 'failed'
      AND id > %(after_id)s
      AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
      AND (%(task)s::text IS NULL OR task = %(task)s::text)
    ORDER BY id
    LIMIT %(limit)s
    FOR UPDATE
), ranked AS (
    SELECT id, row_number() OVER (PARTITION BY unique_key ORDER BY id DESC) AS key_rank
    FROM picked
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
    FROM ranked AS r
    WHERE j.id = r.id
      AND j.state = 'failed'
      AND (j.unique_key IS NULL OR (r.key_rank = 1 AND NOT EXISTS (
          SELECT 1 FROM pgq.jobs AS live
          WHERE live.unique_key = j.unique_key
            AND live.state IN ('queued', 'blocked', 'running'))))
    RETURNING j.id, j.queue, j.has_dependents, j.concurrency_key
), woken AS (
    -- A job of a concurrency-limited key goes back blocked, behind the jobs of its key
    -- that wait already; a wakeup makes the next promotion pass look at the key.
    INSERT INTO pgq.concurrency_wakeups (key, max_active)
    SELECT r.concurrency_key, coalesce(k.max_active, 1)
    FROM (SELECT DISTINCT concurrency_key FROM retried WHERE concurrency_key IS NOT NULL) AS r
    LEFT JOIN pgq.concurrency_keys AS k ON k.key = r.concurrency_key
), notified AS (
    SELECT pg_notify('pgq', queue) FROM (SELECT DISTINCT queue FROM retried) AS due
)
SELECT (SELECT max(id) FROM picked) AS last_id,
       (SELECT count(*) FROM picked) AS picked,
       (SELECT count(*) FROM retried) AS retried,
       (SELECT count(*) FROM notified) AS notified,
       ARRAY(SELECT id FROM retried WHERE has_dependents) AS parents
