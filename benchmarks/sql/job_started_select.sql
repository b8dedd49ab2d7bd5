-- When each job was claimed (started_at is set by the claim statement, in database time).
SELECT id, started_at FROM pgq.jobs WHERE id = ANY(%(ids)s)
