-- Scenario 7's reference: the same row pgq.enqueue writes, without validation and without
-- NOTIFY. Bound by SQLAlchemy text(): colon-prefixed names.
INSERT INTO pgq.jobs (queue, task, args) VALUES (:queue, :task, CAST(:args AS jsonb))
RETURNING id
