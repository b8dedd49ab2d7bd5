-- The reaper: remove the rows of workers unseen for longer than the bound each wrote on
-- its row (they died, or lost the database for that long; one that comes back registers
-- again with its next heartbeat). Under READ COMMITTED a heartbeat that commits first
-- makes PostgreSQL check the condition again on the new row version, so a live worker's
-- row is never deleted. The table holds one row per worker: no index needed.
DELETE FROM pgq.workers
WHERE last_seen_at < coalesce(%(now)s::timestamptz, now())
                     - make_interval(secs => stale_after_seconds)
RETURNING id, hostname, pid, last_seen_at
