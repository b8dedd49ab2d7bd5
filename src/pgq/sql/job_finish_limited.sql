-- job_finish_many.sql for jobs of a concurrency- or rate-limited key (the worker sends only those
-- here; every other job keeps the plain statement, which this one must match outcome for
-- outcome, a result as job_finish_result_many.sql stores it, and pgq.wait's notification
-- included): write the outcomes, fenced by lease token, and in the same statement give the
-- slots of the jobs that finished for good (succeeded, failed, cancelled) to the oldest
-- blocked jobs of their keys, which become `queued`. A job queued again (retry, snooze,
-- release) keeps its slot: with a limit of 1 nothing of its key runs before it does,
-- which keeps per-key order.
--
-- Concurrency: the keys' rows are locked in key order after the jobs' rows, and read at
-- their newest version (see concurrency_keys_unblock.sql): two workers finishing jobs of
-- one key at the same instant take turns, and the second counts the first's release and
-- promotion. A blocked job committed after this statement's snapshot cannot be seen here;
-- when the key's `waiting` hint says blocked jobs remain while a slot is free, a wakeup is
-- left for the next promotion pass, so such a job never waits for a later finish.
WITH held AS MATERIALIZED (
    SELECT d.id, d.outcome, d.delay, d.error, d.result
    FROM unnest(%(ids)s::bigint[], %(tokens)s::bigint[], %(outcomes)s::text[],
                %(delays)s::float8[], %(errors)s::jsonb[], %(results)s::jsonb[])
         AS d(id, token, outcome, delay, error, result)
    CROSS JOIN LATERAL (
        SELECT 1 FROM pgq.jobs
        WHERE id = d.id AND lease_token = d.token AND state = 'running'
        FOR UPDATE
    ) AS fenced
), done AS (
    UPDATE pgq.jobs AS j
    SET state = CASE
            WHEN h.outcome IN ('succeeded', 'failed', 'cancelled') THEN h.outcome
            WHEN h.outcome = 'retry' AND j.attempts >= j.max_attempts THEN 'failed'
            -- A job of a rate-limited key waits to be admitted again (job_claim_rated.sql).
            WHEN j.rate_key IS NOT NULL THEN 'blocked'
            ELSE 'queued'
        END::pgq.job_state,
        attempts = CASE WHEN h.outcome IN ('snooze', 'release') THEN j.attempts - 1
                        ELSE j.attempts END,
        run_at = CASE WHEN h.outcome = 'snooze'
                        OR (h.outcome = 'retry' AND j.attempts < j.max_attempts)
                      THEN now() + make_interval(secs => h.delay)
                      ELSE j.run_at END,
        finished_at = CASE
            WHEN h.outcome IN ('succeeded', 'failed', 'cancelled')
              OR (h.outcome = 'retry' AND j.attempts >= j.max_attempts) THEN now()
        END,
        errors = CASE WHEN h.error IS NULL THEN j.errors
                      ELSE j.errors || jsonb_build_array(
                          jsonb_build_object('attempt', j.attempts, 'at', now(),
                                             'worker_id', j.worker_id) || h.error)
                 END,
        result = coalesce(h.result, j.result),
        lease_expires_at = NULL,
        cancel_requested = false
    FROM held AS h
    -- The ids again as `= ANY`: an index lookup of each, where the join alone was planned
    -- (for a batch of a thousand) as a hash join over a scan of the whole table.
    WHERE j.id = h.id AND j.id = ANY(ARRAY(SELECT id FROM held))
    RETURNING j.id, j.state, j.concurrency_key, j.waited
), freed AS (
    SELECT concurrency_key AS key, count(*)::int AS n
    FROM done
    WHERE concurrency_key IS NOT NULL AND state IN ('succeeded', 'failed', 'cancelled')
    GROUP BY concurrency_key
-- pgq:include fragment_concurrency_handover
SELECT d.id,
       CASE WHEN d.waited AND d.state IN ('succeeded', 'failed', 'cancelled')  -- pgq.wait's
            THEN d.state::text || pg_notify('pgq_finished', d.id::text)::text
            ELSE d.state::text END,
       (SELECT count(*) FROM notified) AS notified
FROM done AS d
