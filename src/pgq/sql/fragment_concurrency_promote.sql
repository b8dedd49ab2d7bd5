-- Not a statement: the CTEs that fill free concurrency slots with the oldest blocked jobs
-- of their keys, included (store.load_sql, `-- pgq:include fragment_concurrency_promote`)
-- by fragment_concurrency_handover (a finish's hand-over) and concurrency_keys_unblock (the
-- promotion pass). The including statement defines `slots (key, max_active, active,
-- waiting)`, each key's row locked; `next` gives, per key, the promoted ids in an array
-- (cardinality(ids) jobs now hold a slot), and `promoted` makes them `queued`.
), next AS MATERIALIZED (
    -- One row per key, its promoted ids in an array: the including statement writes each
    -- key's counts from its own row, where a join of keys with promoted jobs was planned
    -- (for the handful of rows a generic plan expects) as a nested loop, quadratic in the
    -- keys of a batch.
    -- `state > 'cancelled'` is jobs_blocked_idx's own predicate (it means blocked): the
    -- planner then knows every entry matches and reads the index in id order, stopping
    -- after the free slots, and the index scan marks the entries of jobs promoted earlier
    -- dead as it passes them. Asked for `state = 'blocked'`, it expected to filter most
    -- entries out and read and sorted every entry of the key, promoted ones included:
    -- quadratic in a key's backlog until a vacuum.
    SELECT s.key, s.max_active, s.active, s.waiting, b.ids
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
