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
-- pgq:include fragment_concurrency_promote
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
