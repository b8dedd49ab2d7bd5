-- One batch of the pruner over pgq.rate_limits: of the next %(limit)s keys after %(after)s
-- (keyset pagination, as concurrency_keys_prune.sql), delete the rows of keys with no
-- blocked job whose newest start is older than their period, except the rows a worker
-- wrote from its code (`synced`, rate_limits_sync.sql), whose limit must outlive any job.
-- Returns how many keys the batch looked at (fewer than the limit: the run is over), the
-- last of them (the next `after`) and how many rows it deleted.
--
-- The window rule (over any window of the period, starts never exceed the limit) needs
-- only the starts newer than t - period at each admission t. Every start of a deleted row
-- is at most now() - period, and every admission after our commit takes t =
-- clock_timestamp() later than our now(): a re-created row with no starts admits exactly
-- what the deleted one would have. So the deletion must read the newest starts:
-- * The row is locked FOR UPDATE SKIP LOCKED: a rated claim (job_claim_rated.sql) holding
--   it now (it locks rows with SKIP LOCKED too) keeps it; nobody waits.
-- * A claim that committed after our snapshot changed the row: the lock re-reads its newest
--   version and re-checks the newest start there, so a start it recorded keeps the row.
--   The DELETE checks it again on the row we locked.
-- * A rated enqueue (job_insert_rated.sql, job_insert_many_blocked.sql) inserts its job and
--   the key's row with ON CONFLICT DO NOTHING, which locks nothing: one that found the row
--   and commits after our snapshot may leave a blocked job whose row we deleted. So may
--   a retry, a snooze or a lapsed lease of a job that runs longer than its period, and a
--   `pgq retry` of a failed job, none of which writes the row. A blocked job without a row
--   is not lost: the rated claim of a worker running its task creates the key's row from
--   the task's limit and admits it at its next claim (job_claim_rated.sql, `created`).
-- * The blocked check reads our snapshot: it only spares rows that would be re-created at
--   once, and can keep a row too long, never delete one a window needs.
WITH scanned AS MATERIALIZED (
    SELECT key
    FROM pgq.rate_limits
    WHERE key > %(after)s::text
    ORDER BY key
    LIMIT %(limit)s
), idle AS MATERIALIZED (
    SELECT r.key
    FROM pgq.rate_limits AS r
    WHERE r.key = ANY(ARRAY(SELECT key FROM scanned))
      AND NOT r.synced
      AND NOT EXISTS (
          SELECT 1 FROM unnest(r.starts) AS s WHERE s > now() - make_interval(secs => r.period)
      )
      AND NOT EXISTS (
          SELECT 1 FROM pgq.jobs AS j  -- jobs_rate_blocked_idx: `state > 'cancelled'` is blocked
          WHERE j.rate_key = r.key AND j.state > 'cancelled'
      )
    ORDER BY r.key
    FOR UPDATE OF r SKIP LOCKED
), deleted AS (
    DELETE FROM pgq.rate_limits AS r
    USING idle
    WHERE r.key = idle.key
      AND NOT r.synced
      AND NOT EXISTS (
          SELECT 1 FROM unnest(r.starts) AS s WHERE s > now() - make_interval(secs => r.period)
      )
    RETURNING r.key
)
SELECT (SELECT count(*) FROM scanned) AS scanned,
       (SELECT max(key) FROM scanned) AS last_key,
       (SELECT count(*) FROM deleted) AS deleted
