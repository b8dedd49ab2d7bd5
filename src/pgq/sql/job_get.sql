-- One job with everything an operator needs to understand it, its error history included,
-- and its workflow (NULL for a plain job) with how many parents it still waits for.
SELECT id, queue, task, state::text, priority, attempts, max_attempts, run_at, created_at,
       started_at, finished_at, worker_id, cancel_requested, lease_token, lease_expires_at,
       unique_key, args, errors, result, workflow_id, parents_pending
FROM pgq.jobs
WHERE id = %(job_id)s
