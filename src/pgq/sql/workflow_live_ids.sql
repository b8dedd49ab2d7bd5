-- The members of workflow %(workflow_id)s that are not final yet (queued, waiting,
-- running), through jobs_workflow_live_idx: what cancelling the workflow cancels.
SELECT id
FROM pgq.jobs
WHERE workflow_id = %(workflow_id)s AND state IN ('queued', 'waiting', 'running')
ORDER BY id
