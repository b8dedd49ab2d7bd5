-- Claim up to %(limit)s jobs of rate-limited keys, admitting each under its key's limit, in
-- one statement: a job's start is its claim, in database time.
--
-- For each key with a due blocked job of our queues and tasks (fragment_rate_keys_due.sql:
-- found from the blocked jobs' index, one probe per key that has any), the key's row is
-- locked with SKIP LOCKED (another worker admitting that key right now keeps it; no worker
-- ever waits here) and read at its newest version.
-- The time of admission t is clock_timestamp() taken after the lock, so admissions of one
-- key are in time order whatever the transactions' start times. The window (t - period,
-- t] holds the starts of the row that are newer than t - period; the key admits
-- max_starts minus those, oldest jobs first, and the row keeps the starts of the window
-- plus the new ones. Over any window of the period, starts never exceed the limit.
-- Blocked jobs are locked with SKIP LOCKED too and re-checked: one another statement
-- claimed since our snapshot is skipped.
--
-- A key with due jobs and no row (the pruner deleted an idle row while a job of the key
-- was being enqueued, retried or sent back; see rate_limits_prune.sql) gets its row here,
-- with the limit of the task of its oldest due job (%(max_starts)s and %(periods)s, one per
-- task as %(leases)s, NULL for a task without a rate limit), and no starts: the pruner only
-- deletes a row whose starts have all left the window. Its jobs are admitted from the next
-- claim on, which can lock the row: two claims inserting the same new row could otherwise
-- each fill its window (as for new keys in concurrency_keys_unblock.sql).
--
-- Returns the columns of job_claim.sql; `limited` is true, so the worker writes the outcome
-- with job_finish_limited.sql, which sends a retry back `blocked`, to be admitted again. A
-- key with no room admits nothing and its jobs are never claimed to be put back:
-- rate_limit_next_free.sql says when to look again.
WITH RECURSIVE
-- pgq:include fragment_rate_keys_due
), created AS (
    INSERT INTO pgq.rate_limits (key, max_starts, period)
    SELECT d.key, l.max_starts, l.period
    FROM due AS d
    CROSS JOIN LATERAL (
        SELECT (%(max_starts)s::int[])[array_position(%(tasks)s::text[], d.task)] AS max_starts,
               (%(periods)s::float8[])[array_position(%(tasks)s::text[], d.task)] AS period
    ) AS l
    WHERE l.max_starts IS NOT NULL AND l.period IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM pgq.rate_limits AS r WHERE r.key = d.key)
    ORDER BY d.key
    ON CONFLICT (key) DO NOTHING
), locked AS MATERIALIZED (
    SELECT r.key, r.max_starts, r.period, r.starts
    FROM pgq.rate_limits AS r
    WHERE r.key = ANY(ARRAY(SELECT key FROM due))  -- index lookups, not a scan of every row
    ORDER BY r.key
    FOR UPDATE OF r SKIP LOCKED
), timed AS MATERIALIZED (
    SELECT l.key, l.max_starts, l.period, t.t,
           ARRAY(SELECT s FROM unnest(l.starts) AS s
                 WHERE s > t.t - make_interval(secs => l.period) ORDER BY s) AS recent
    FROM locked AS l
    CROSS JOIN LATERAL (SELECT clock_timestamp() AS t) AS t
), picked AS MATERIALIZED (
    SELECT b.id, w.key, w.t
    FROM timed AS w
    CROSS JOIN LATERAL (
        SELECT id FROM pgq.jobs
        WHERE state = 'blocked' AND rate_key = w.key
          AND queue = ANY(%(queues)s::text[]) AND task = ANY(%(tasks)s::text[])
          AND run_at <= now()
        ORDER BY id
        LIMIT greatest(w.max_starts - cardinality(w.recent), 0)
        FOR UPDATE SKIP LOCKED
    ) AS b
    ORDER BY b.id
    LIMIT %(limit)s
), claimed AS (
    UPDATE pgq.jobs AS j
    SET state = 'running',
        attempts = j.attempts + 1,
        lease_token = j.lease_token + 1,
        worker_id = %(worker_id)s,
        started_at = p.t,
        lease_expires_at = p.t + make_interval(
            secs => (%(leases)s::float8[])[array_position(%(tasks)s::text[], j.task)]),
        cancel_requested = false
    FROM picked AS p
    WHERE j.id = p.id
    RETURNING j.id, j.queue, j.task, j.args, j.attempts, j.max_attempts, j.lease_token,
              j.priority, j.run_at, j.created_at,
              extract(epoch FROM p.t - j.run_at)::float8 AS lag_seconds, j.has_dependents,
              true AS limited, j.rate_key
), counted AS (
    UPDATE pgq.rate_limits AS r
    SET starts = w.recent || ARRAY(SELECT w.t FROM claimed AS c WHERE c.rate_key = w.key)
    FROM timed AS w
    -- The keys again as `= ANY`: index lookups, where the join alone was planned as a hash
    -- join over a scan of the whole table.
    WHERE r.key = w.key AND r.key = ANY(ARRAY(SELECT key FROM timed))
)
SELECT id, queue, task, args, attempts, max_attempts, lease_token, priority, run_at,
       created_at, lag_seconds, has_dependents, limited
FROM claimed
