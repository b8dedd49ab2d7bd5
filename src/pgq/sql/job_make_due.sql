-- pgq.testing.run_jobs(include_scheduled=True): queued jobs of these queues and tasks
-- that are scheduled for later become due now, so one burst runs them. Only queued rows
-- change (a running job keeps its lease); never used by workers.
UPDATE pgq.jobs
SET run_at = now()
WHERE state = 'queued'
  AND run_at > now()
  AND queue = ANY(%(queues)s::text[])
  AND task = ANY(%(tasks)s::text[])
