-- The promotion pass: take up to %(limit)s wakeups (left by limited enqueues, operator
-- retries, and finishes that could not see every blocked job) and fill the free slots of
-- their keys with the oldest blocked jobs, which become `queued` for any worker to claim.
--
-- Concurrency: each key's row is locked (FOR UPDATE, key order, so passes and finishes
-- never wait on each other in a circle) and read at its newest version, so `active` counts
-- every promotion and release committed before, even after our snapshot. The blocked jobs
-- are locked with SKIP LOCKED, and one promoted by another statement since our snapshot no
-- longer matches `state > 'cancelled'` (blocked) when locked: it is skipped, never promoted twice.
-- A key seen for the first time has no row yet: it is created here (ON CONFLICT DO
-- NOTHING if another pass creates it at the same time) and its wakeups stay for the next
-- pass, which can lock it: two passes inserting the same new row could otherwise each fill
-- all its slots. `waiting` is set to the blocked jobs left, the hint finishes use to leave
-- a wakeup when they could not see all of them (see job_finish_limited.sql).
-- A wakeup is consumed only with its key's row locked; the jobs it stands for committed
-- before it did, so this statement sees them.
WITH woken AS MATERIALIZED (
    SELECT id, key, max_active
    FROM pgq.concurrency_wakeups
    ORDER BY id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), wanted AS (
    SELECT key, (array_agg(max_active ORDER BY id DESC))[1] AS max_active
    FROM woken
    GROUP BY key
), slots AS MATERIALIZED (
    SELECT k.key, w.max_active, k.active, k.waiting
    FROM pgq.concurrency_keys AS k
    JOIN wanted AS w ON w.key = k.key
    ORDER BY k.key
    FOR UPDATE OF k
), created AS (
    INSERT INTO pgq.concurrency_keys (key, max_active)
    SELECT key, max_active FROM wanted
    WHERE key NOT IN (SELECT key FROM slots)
    ORDER BY key
    ON CONFLICT (key) DO NOTHING
    RETURNING key
), consumed AS (
    DELETE FROM pgq.concurrency_wakeups AS w
    USING woken
    WHERE w.id = woken.id AND woken.key IN (SELECT key FROM slots)
-- pgq:include fragment_concurrency_promote
), counted AS (
    -- `waiting`: the key's blocked jobs in this statement's snapshot, which still shows the
    -- promoted ones blocked, less those.
    UPDATE pgq.concurrency_keys AS k
    SET max_active = n.max_active,
        active = n.active + cardinality(n.ids),
        waiting = greatest((SELECT count(*) FROM pgq.jobs
                            WHERE concurrency_key = n.key AND state > 'cancelled')::int
                           - cardinality(n.ids), 0)
    FROM next AS n
    WHERE k.key = n.key
    RETURNING k.key
), notified AS (
    SELECT pg_notify('pgq', queue) FROM (SELECT DISTINCT queue FROM promoted) AS due
)
SELECT (SELECT count(*) FROM woken) AS woken,
       (SELECT count(*) FROM created) AS created,
       (SELECT count(*) FROM counted) AS keys,
       (SELECT count(*) FROM promoted) AS promoted,
       (SELECT count(*) FROM notified) AS notified
