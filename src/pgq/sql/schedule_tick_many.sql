-- Enqueue the due ticks of many schedules in one statement, each exactly once whatever
-- other workers do at the same moment. %(ticks)s is a JSON array with one object per
-- schedule: name, expected (the last_tick_at this worker read, or null), definition_hash
-- (its own definition's), ticks (the due ticks to enqueue, oldest first, all after
-- expected) and next_tick_at (the first tick after the last of them).
--
-- Exactly once: `won` locks each schedule row whose last_tick_at is still the expected one
-- (compare-and-set). A worker that reaches a row another worker has just advanced waits
-- for that transaction, and PostgreSQL re-checks the WHERE on the row's new version: the
-- compare fails, the row drops out, and this worker inserts nothing for it. The winner
-- inserts the ticks' jobs and advances last_tick_at in the same statement, so a crash
-- anywhere leaves either both or neither. A worker whose definition differs from the
-- row's (another version of the app during a deploy) never ticks it; nor does anyone once
-- the schedule is inactive. No tick after %(now)s (default: the server's now()) is taken.
--
-- The overlap policy 'skip': when the previous tick's job (last_job_id, a primary-key
-- lookup) is still queued or running, the ticks are consumed without a job and counted
-- in skipped_ticks. The ticks of one pass (catch-up) are enqueued together.
--
-- Each job's run_at is its tick, so a task can read the tick it runs for. One NOTIFY per
-- queue, delivered at COMMIT like enqueue's.
--
-- A schedule whose task has a concurrency or a rate limit sends its job's key and limit
-- (concurrency_key and concurrency_limit, or rate_key, max_starts and period; null
-- otherwise): its jobs are inserted `blocked` and wait for their key as enqueued ones do,
-- with a wakeup for the key's promotion pass, or the key's rate row when it has none (see
-- job_insert_many_blocked.sql). A blocked previous job counts as live for 'skip'.
-- Returns (name, enqueued, skipped, last_job_id) per schedule advanced.
WITH input AS (
    SELECT *
    FROM jsonb_to_recordset(%(ticks)s::jsonb) AS t(
        name text, expected timestamptz, definition_hash text, ticks timestamptz[],
        next_tick_at timestamptz, concurrency_key text, concurrency_limit int,
        rate_key text, max_starts int, period float8)
), won AS MATERIALIZED (
    SELECT s.name, s.task, s.queue, s.args, s.priority, s.max_attempts, s.overlap,
           s.last_job_id, i.ticks, i.next_tick_at, i.concurrency_key, i.concurrency_limit,
           i.rate_key, i.max_starts, i.period
    FROM input AS i
    JOIN pgq.schedules AS s ON s.name = i.name
    WHERE s.active
      AND s.definition_hash = i.definition_hash
      AND s.last_tick_at IS NOT DISTINCT FROM i.expected
      AND cardinality(i.ticks) >= 1
      AND i.ticks[1] > coalesce(s.last_tick_at, '-infinity')
      AND i.ticks[cardinality(i.ticks)] <= coalesce(%(now)s::timestamptz, now())
    FOR UPDATE OF s
), decided AS MATERIALIZED (
    -- One row per schedule won, with everything the writes below need, so nothing joins
    -- two CTEs (PostgreSQL guesses one row for jsonb_to_recordset, and would nest-loop
    -- such a join: 1,000 schedules cost 1,000,000 comparisons). The previous tick's job is
    -- a primary-key lookup. The new jobs' ids come from the jobs' sequence, in tick order
    -- (RETURNING cannot name the schedule a row came from).
    SELECT w.*, j.state AS previous_state,
           coalesce(j.finished_at, j.started_at, j.created_at) AS previous_at,
           j.finished_at AS previous_finished_at,
           CASE WHEN w.overlap = 'skip' AND j.state IN ('queued', 'running', 'blocked')
                THEN NULL
                ELSE ARRAY(SELECT nextval('pgq.jobs_id_seq') FROM unnest(w.ticks)) END AS ids
    FROM won AS w
    LEFT JOIN pgq.jobs AS j ON j.id = w.last_job_id
), inserted AS (
    INSERT INTO pgq.jobs (id, queue, task, args, priority, run_at, max_attempts, state,
                          concurrency_key, rate_key)
    OVERRIDING SYSTEM VALUE
    SELECT t.id, d.queue, d.task, d.args, d.priority, t.tick, d.max_attempts,
           CASE WHEN d.concurrency_key IS NULL AND d.rate_key IS NULL THEN 'queued'
                ELSE 'blocked' END::pgq.job_state,
           d.concurrency_key, d.rate_key
    FROM decided AS d
    CROSS JOIN LATERAL unnest(d.ids, d.ticks) AS t(id, tick)
    WHERE d.ids IS NOT NULL
    RETURNING id, queue
), woken AS (
    INSERT INTO pgq.concurrency_wakeups (key, max_active)
    SELECT concurrency_key, concurrency_limit FROM decided
    WHERE ids IS NOT NULL AND concurrency_key IS NOT NULL
), rates AS (
    INSERT INTO pgq.rate_limits (key, max_starts, period)
    SELECT DISTINCT ON (rate_key) rate_key, max_starts, period FROM decided
    WHERE ids IS NOT NULL AND rate_key IS NOT NULL
    ORDER BY rate_key
    ON CONFLICT (key) DO NOTHING
), advanced AS (
    UPDATE pgq.schedules AS s
    SET last_tick_at = d.ticks[cardinality(d.ticks)],
        next_tick_at = d.next_tick_at,
        last_job_id = coalesce(d.ids[cardinality(d.ids)], s.last_job_id),
        last_enqueued_at = CASE WHEN d.ids IS NOT NULL THEN now() ELSE s.last_enqueued_at END,
        last_skipped_at = CASE WHEN d.ids IS NULL THEN now() ELSE s.last_skipped_at END,
        skipped_ticks = s.skipped_ticks
            + CASE WHEN d.ids IS NULL THEN cardinality(d.ticks) ELSE 0 END,
        last_outcome = coalesce(d.previous_state::text, s.last_outcome),
        last_outcome_at = coalesce(d.previous_at, s.last_outcome_at),
        last_success_at = CASE WHEN d.previous_state = 'succeeded'
                               THEN greatest(s.last_success_at, d.previous_finished_at)
                               ELSE s.last_success_at END
    FROM decided AS d
    WHERE s.name = d.name
    RETURNING s.name, coalesce(cardinality(d.ids), 0) AS enqueued, d.ids IS NULL AS skipped,
              s.last_job_id
)
SELECT a.name, a.enqueued, a.skipped, a.last_job_id,
       (SELECT count(pg_notify('pgq', q.queue))
        FROM (SELECT DISTINCT queue FROM inserted) AS q) AS notified
FROM advanced AS a
ORDER BY a.name
