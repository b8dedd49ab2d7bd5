-- Heartbeat: extend the leases of every job still running in this worker, in one
-- statement. lease_expires_at is in no index, so these are HOT updates. A job missing from
-- RETURNING is no longer ours (its lease lapsed and it was taken back): the worker stops
-- treating it as held. cancel_requested carries an operator's cancel to the worker.
UPDATE pgq.jobs AS j
SET lease_expires_at = now() + make_interval(secs => d.lease)
FROM unnest(%(ids)s::bigint[], %(tokens)s::bigint[], %(leases)s::float8[])
     AS d(id, token, lease)
WHERE j.id = d.id AND j.lease_token = d.token AND j.state = 'running'
RETURNING j.id, j.cancel_requested
