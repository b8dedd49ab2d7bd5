-- What pgq.result and pgq.wait need to know about one job: its state, its result, and its
-- last error (for JobFailed). A primary-key lookup.
SELECT state::text, result, task, attempts, errors -> -1
FROM pgq.jobs
WHERE id = %(job_id)s
