-- Queued jobs no live worker serves, per queue and task (pgq.orphaned_jobs).
SELECT queue, task, queued, ready, oldest_created_at, oldest_seconds
FROM pgq.orphaned_jobs
