-- Return jobs whose lease lapsed (their worker died, hung, or lost the database) to the
-- queue with the default backoff, or fail them once their attempts are used up. One
-- statement per batch, so a crash can never leave a job half-reaped.
--
-- Concurrency, under READ COMMITTED:
-- * SKIP LOCKED: a row a worker is writing right now (completing it, extending its lease)
--   is skipped, never waited for; the next pass looks again after the worker commits.
-- * A row changed and committed after this statement's snapshot is re-read when it is
--   locked, and the WHERE below is re-checked on the new version: a lease extended,
--   a job completed or re-claimed since then no longer qualifies.
-- * The UPDATE fences again on the token the lock read, state and lease, so the write
--   can only ever touch the exact claim this pass judged to be dead.
-- `attempts` already grew at claim time, so a job that kills its worker every time still
-- stops at max_attempts (guarantee 6). A lapsed job whose cancel was requested is
-- cancelled: the worker that should have stopped it is gone.
-- The backoff is retry.py's default policy, its constants passed in by the caller:
-- least(cap, base * factor^(attempt-1)) spread by +/- jitter, capped again. The power is
-- taken in log space and clamped at ln(cap) first, so attempt 1000 cannot overflow.
-- Uses jobs_running_idx: the running set is small, whatever the table's size.
-- A lapsed job of a concurrency-limited key that is failed or cancelled here gives its
-- slot to the next blocked job of its key in this statement, as job_finish_limited.sql
-- does (the same CTEs); one queued again keeps its slot. For jobs without a key those
-- CTEs find nothing to do.
WITH expired AS MATERIALIZED (
    SELECT id, lease_token, worker_id, lease_expires_at
    FROM pgq.jobs
    WHERE state = 'running'
      AND lease_expires_at < coalesce(%(now)s::timestamptz, now())
    ORDER BY id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), reaped AS (
    UPDATE pgq.jobs AS j
    SET state = CASE
            WHEN j.cancel_requested THEN 'cancelled'
            WHEN j.attempts >= j.max_attempts THEN 'failed'
            WHEN j.rate_key IS NOT NULL THEN 'blocked'  -- admitted again by the rated claim
            ELSE 'queued'
        END::pgq.job_state,
        run_at = CASE
            WHEN j.cancel_requested OR j.attempts >= j.max_attempts THEN j.run_at
            ELSE coalesce(%(now)s::timestamptz, now()) + make_interval(secs => CASE
                WHEN %(backoff_base)s::float8 <= 0 OR %(backoff_cap)s::float8 <= 0 THEN 0
                ELSE least(
                    %(backoff_cap)s::float8,
                    exp(least(
                        ln(%(backoff_base)s::float8)
                            + (greatest(j.attempts, 1) - 1) * ln(%(backoff_factor)s::float8),
                        ln(%(backoff_cap)s::float8)
                    )) * (1 + %(backoff_jitter)s::float8 * (2 * random() - 1))
                )
            END)
        END,
        finished_at = CASE
            WHEN j.cancel_requested OR j.attempts >= j.max_attempts
            THEN coalesce(%(now)s::timestamptz, now())
        END,
        worker_id = NULL,
        lease_expires_at = NULL,
        cancel_requested = false,
        errors = j.errors || jsonb_build_array(jsonb_build_object(
            'attempt', j.attempts,
            'at', coalesce(%(now)s::timestamptz, now()),
            'kind', 'lease_expired',
            'message', 'lease expired while held by worker ' || coalesce(e.worker_id, '(unknown)'),
            'traceback', NULL,
            'worker_id', e.worker_id
        ))
    FROM expired AS e
    WHERE j.id = e.id
      AND j.lease_token = e.lease_token
      AND j.state = 'running'
      AND j.lease_expires_at < coalesce(%(now)s::timestamptz, now())
    RETURNING j.id, j.queue, j.task, j.state, j.attempts, j.max_attempts, j.run_at,
              e.worker_id, e.lease_expires_at, j.concurrency_key, j.waited
), freed AS (
    SELECT concurrency_key AS key, count(*)::int AS n
    FROM reaped
    WHERE concurrency_key IS NOT NULL AND state IN ('succeeded', 'failed', 'cancelled')
    GROUP BY concurrency_key
-- pgq:include fragment_concurrency_handover
SELECT r.id, r.queue, r.task,
       CASE WHEN r.waited AND r.state IN ('succeeded', 'failed', 'cancelled')  -- pgq.wait's
            THEN r.state::text || pg_notify('pgq_finished', r.id::text)::text
            ELSE r.state::text END,
       r.attempts, r.max_attempts, r.run_at, r.worker_id, r.lease_expires_at,
       (SELECT count(*) FROM notified) AS notified
FROM reaped AS r
