-- job_copy.sql for a batch in which some job has a run_at or a delay: each row carries its
-- run_at (the given one, or the transaction's now() + delay, computed by the caller from
-- the now() that job_ids_next.sql returned).
COPY pgq.jobs (id, queue, task, args, priority, max_attempts, run_at) FROM STDIN
