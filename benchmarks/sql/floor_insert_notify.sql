-- Scenario 1's floor: a bare INSERT into a one-table queue and its NOTIFY, in one round
-- trip, the least an enqueue can cost. Bound by SQLAlchemy text(): colon-prefixed names.
WITH inserted AS (
    INSERT INTO pgq_bench.floor_jobs (queue, task, args)
    VALUES (:queue, :task, CAST(:args AS jsonb))
    RETURNING id, queue
)
SELECT id, pg_notify('pgq_bench', queue) FROM inserted
