-- The workers page: the jobs running now (the pgq.running_jobs view, through
-- jobs_running_idx: the running set is small), longest running first, at most `limit`.
SELECT id, queue, task, worker_id, attempt, started_at, running_seconds, lease_left_seconds,
       cancel_requested
FROM pgq.running_jobs
LIMIT %(limit)s
