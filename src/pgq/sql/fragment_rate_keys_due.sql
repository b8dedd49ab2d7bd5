-- Not a statement: the head of the CTE list (after `WITH RECURSIVE`) that finds the rate
-- keys with a due blocked job of our queues and tasks, included (store.load_sql,
-- `-- pgq:include fragment_rate_keys_due`) by job_claim_rated and rate_limit_next_free.
-- It defines `due (key, task)`: each such key and the task of its oldest due job.
--
-- The keys come from the blocked jobs, never from pgq.rate_limits: `blocked_keys` walks
-- jobs_rate_blocked_idx one distinct key at a time (a loose index scan: each step is one
-- probe for the first key after the last one), so the cost follows the keys that have
-- blocked jobs, not the rows pgq.rate_limits keeps (a claim of 50 jobs over 10 waiting keys
-- among 10,000 rows: 2.3 ms, against 4.9 ms probing every row, 1.9 ms with 10 rows).
-- `state > 'cancelled'` is the index's own predicate (it means blocked: see pgq_0011), so
-- each probe reads the index in key order and stops at the first entry. Then one probe
-- per key for a due job of ours, oldest first.
blocked_keys AS (
    (SELECT rate_key AS key FROM pgq.jobs
     WHERE rate_key IS NOT NULL AND state > 'cancelled'
     ORDER BY rate_key
     LIMIT 1)
    UNION ALL
    SELECT (SELECT j.rate_key FROM pgq.jobs AS j
            WHERE j.rate_key > b.key AND j.state > 'cancelled'
            ORDER BY j.rate_key
            LIMIT 1)
    FROM blocked_keys AS b
    WHERE b.key IS NOT NULL
), due AS MATERIALIZED (
    SELECT b.key, d.task
    FROM blocked_keys AS b
    CROSS JOIN LATERAL (
        SELECT j.task FROM pgq.jobs AS j
        WHERE j.state = 'blocked' AND j.rate_key = b.key
          AND j.queue = ANY(%(queues)s::text[]) AND j.task = ANY(%(tasks)s::text[])
          AND j.run_at <= now()
        ORDER BY j.id
        LIMIT 1
    ) AS d
    WHERE b.key IS NOT NULL
