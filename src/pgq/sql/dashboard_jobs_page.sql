-- One page of the dashboard's job list: jobs with before > id >= floor, newest first,
-- filtered (a NULL filter means any). Keyset pagination by id: no OFFSET and no count(*),
-- and the id range bounds what one page can read (pgq.web.queries.SCAN_WINDOW ids of the
-- primary key, or of jobs_running_idx / jobs_failed_queue_idx for those states), however
-- many millions of rows the table holds and however rare the filter's matches are.
SELECT id, queue, task, state::text, priority, attempts, max_attempts, run_at, created_at,
       finished_at, worker_id, errors -> -1 ->> 'message' AS last_error
FROM pgq.jobs
WHERE id < %(before)s
  AND id >= %(floor)s
  AND (%(state)s::pgq.job_state IS NULL OR state = %(state)s::pgq.job_state)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
  AND (%(task)s::text IS NULL OR task = %(task)s::text)
ORDER BY id DESC
LIMIT %(limit)s
