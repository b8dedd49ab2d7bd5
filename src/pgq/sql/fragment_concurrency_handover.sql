-- Not a statement: the tail of the CTE list that hands freed concurrency slots to blocked
-- jobs, included (store.load_sql, `-- pgq:include fragment_concurrency_handover`) by every
-- statement that ends a limited job: job_finish_limited, job_complete_tx, job_reap_expired
-- and job_cancel_many. The including statement defines `freed (key, n)`: how many slots
-- each key gives back. Under each key's row lock (slots), the oldest blocked jobs of the key
-- fill its free slots (next, promoted), the key's counts follow (counted), a key that still
-- has room and waiting jobs is left a wakeup for the next promotion pass (rewoken), and the
-- promoted jobs' queues are notified.
), slots AS MATERIALIZED (
    SELECT k.key, k.max_active, greatest(k.active - f.n, 0) AS active, k.waiting
    FROM pgq.concurrency_keys AS k
    JOIN freed AS f ON f.key = k.key
    ORDER BY k.key
    FOR UPDATE OF k
), next AS MATERIALIZED (
    -- One row per key, its promoted ids in an array: the counts below read the row they
    -- belong to, where a join of keys with promoted jobs was planned (for the handful of
    -- rows a generic plan expects) as a nested loop, quadratic in the keys of a batch.
    -- `state > 'cancelled'` is jobs_blocked_idx's own predicate (it means blocked): the
    -- planner then knows every entry matches and reads the index in id order, stopping
    -- after the free slots, and the index scan marks the entries of jobs promoted earlier
    -- dead as it passes them. Asked for `state = 'blocked'`, it expected to filter most
    -- entries out and read and sorted every entry of the key, promoted ones included:
    -- quadratic in a key's backlog until a vacuum.
    SELECT s.key, s.active, s.waiting, b.ids
    FROM slots AS s
    CROSS JOIN LATERAL (
        SELECT ARRAY(
            SELECT id FROM pgq.jobs
            WHERE concurrency_key = s.key AND state > 'cancelled'
            ORDER BY id
            LIMIT greatest(s.max_active - s.active, 0)
            FOR UPDATE SKIP LOCKED
        ) AS ids
    ) AS b
), promoted AS (
    UPDATE pgq.jobs AS j
    SET state = 'queued'
    WHERE j.id = ANY(ARRAY(SELECT unnest(ids) FROM next))
    RETURNING j.queue
), counted AS (
    UPDATE pgq.concurrency_keys AS k
    SET active = n.active + cardinality(n.ids),
        waiting = greatest(n.waiting - cardinality(n.ids), 0)
    FROM next AS n
    WHERE k.key = n.key
    RETURNING k.key, k.max_active, k.active, k.waiting
), rewoken AS (
    INSERT INTO pgq.concurrency_wakeups (key, max_active)
    SELECT key, max_active FROM counted WHERE waiting > 0 AND active < max_active
), notified AS (
    SELECT pg_notify('pgq', queue) FROM (SELECT DISTINCT queue FROM promoted) AS due
)
