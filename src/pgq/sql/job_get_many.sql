-- pgq.testing.run_jobs: the jobs a run attempted, as they are after it (columns as in
-- job_get.sql).
SELECT id, queue, task, state::text, priority, attempts, max_attempts, run_at, created_at,
       started_at, finished_at, worker_id, cancel_requested, lease_token, lease_expires_at,
       unique_key, args, errors, result, workflow_id, parents_pending
FROM pgq.jobs
WHERE id = ANY(%(ids)s::bigint[])
