-- Operator listing, newest first. A NULL filter means "any": with the values bound, the
-- planner folds `NULL IS NULL OR …` away, so `state = 'failed'` can use a partial index.
SELECT id, queue, task, state::text, priority, attempts, max_attempts, run_at, created_at,
       started_at, finished_at, worker_id, cancel_requested,
       errors -> -1 ->> 'message' AS last_error
FROM pgq.jobs
WHERE (%(state)s::pgq.job_state IS NULL OR state = %(state)s::pgq.job_state)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
  AND (%(task)s::text IS NULL OR task = %(task)s::text)
ORDER BY id DESC
LIMIT %(limit)s
