-- Heartbeat: extend the leases of every job still running in this worker, in one
-- statement. lease_expires_at is in no index, so these are HOT updates. A job missing from
-- RETURNING is no longer ours (its lease lapsed and it was taken back): the worker stops
-- treating it as held. cancel_requested carries an operator's cancel to the worker.
-- Rows are found by primary key (see job_finish_many.sql for why) and locked there, so the
-- fence cannot change between the check and the write.
WITH held AS MATERIALIZED (
    SELECT d.id, d.lease
    FROM unnest(%(ids)s::bigint[], %(tokens)s::bigint[], %(leases)s::float8[])
         AS d(id, token, lease)
    CROSS JOIN LATERAL (
        SELECT 1 FROM pgq.jobs
        WHERE id = d.id AND lease_token = d.token AND state = 'running'
        FOR UPDATE
    ) AS fenced
)
UPDATE pgq.jobs AS j
SET lease_expires_at = now() + make_interval(secs => h.lease)
FROM held AS h
WHERE j.id = h.id
RETURNING j.id, j.cancel_requested
