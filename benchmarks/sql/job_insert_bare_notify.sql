-- Scenario 7's diagnostic: the bare INSERT plus a NOTIFY, to tell NOTIFY's cost apart
-- from pgq's own. Bound by SQLAlchemy text().
WITH inserted AS (
    INSERT INTO pgq.jobs (queue, task, args) VALUES (:queue, :task, CAST(:args AS jsonb))
    RETURNING id, queue
)
SELECT id, pg_notify('pgq', queue) FROM inserted
