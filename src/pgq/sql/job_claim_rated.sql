-- Claim up to %(limit)s jobs of rate-limited keys, admitting each under its key's limit, in
-- one statement: a job's start is its claim, in database time.
--
-- For each key with a due blocked job of our queues and tasks (one index probe per key of
-- pgq.rate_limits), the key's row is locked with SKIP LOCKED (another worker admitting
-- that key right now keeps it; no worker ever waits here) and read at its newest version.
-- The time of admission t is clock_timestamp() taken after the lock, so admissions of one
-- key are in time order whatever the transactions' start times. The window (t - period,
-- t] holds the starts of the row that are newer than t - period; the key admits
-- max_starts minus those, oldest jobs first, and the row keeps the starts of the window
-- plus the new ones. Over any window of the period, starts never exceed the limit.
-- Blocked jobs are locked with SKIP LOCKED too and re-checked: one another statement
-- claimed since our snapshot is skipped.
--
-- Returns the columns of job_claim.sql; `limited` is true, so the worker writes the outcome
-- with job_finish_limited.sql, which sends a retry back `blocked`, to be admitted again. A key with no room admits nothing and its jobs are
-- never claimed to be put back: rate_limit_next_free.sql says when to look again.
WITH keys AS MATERIALIZED (
    SELECT r.key
    FROM pgq.rate_limits AS r
    WHERE EXISTS (
        SELECT 1 FROM pgq.jobs AS j
        WHERE j.state = 'blocked' AND j.rate_key = r.key
          AND j.queue = ANY(%(queues)s::text[]) AND j.task = ANY(%(tasks)s::text[])
          AND j.run_at <= now()
    )
), locked AS MATERIALIZED (
    SELECT r.key, r.max_starts, r.period, r.starts
    FROM pgq.rate_limits AS r
    WHERE r.key IN (SELECT key FROM keys)
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
    WHERE r.key = w.key
)
SELECT id, queue, task, args, attempts, max_attempts, lease_token, priority, run_at,
       created_at, lag_seconds, has_dependents, limited
FROM claimed
