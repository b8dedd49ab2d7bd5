-- How many failed jobs `pgq retry --failed` would look at (the same optional queue and task
-- filters, NULL = any): the total of its progress bar. Reads jobs_failed_queue_idx, whose
-- entries are the failed rows only, never the finished millions.
SELECT count(*)
FROM pgq.jobs
WHERE state = 'failed'
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
  AND (%(task)s::text IS NULL OR task = %(task)s::text)
