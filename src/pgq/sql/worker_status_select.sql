-- pgq workers: every registered worker (pgq.worker_status), alive or not yet removed.
SELECT id, hostname, pid, version, queues, tasks, concurrency, running, held, started_at,
       last_seen_at, last_seen_seconds, alive
FROM pgq.worker_status
