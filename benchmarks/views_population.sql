-- The table the dashboard views must stay cheap on: 1,000,000 finished jobs spread over the
-- last 7 days (95% succeeded, 4% failed with an error, 1% cancelled), 100,000 queued jobs
-- (90% ready, 10% scheduled, 1% waiting for a retry with an error) and 100 running jobs,
-- in 5 queues, and 8 workers (below). Used by benchmarks/explain_views.py and
-- tests/integration/test_views.py.
INSERT INTO pgq.jobs (queue, task, state, run_at, attempts, max_attempts, created_at,
                      started_at, finished_at, errors)
SELECT 'q' || (i % 5), 'task.' || (i % 20), s.state, f.at - interval '2 seconds',
       CASE s.state WHEN 'failed' THEN 3 ELSE 1 END, 3, f.at - interval '2 seconds',
       f.at - interval '1 second', f.at,
       CASE s.state WHEN 'failed' THEN jsonb_build_array(jsonb_build_object(
           'attempt', 3, 'at', f.at, 'kind', 'exception', 'message', 'boom',
           'traceback', NULL, 'worker_id', 'w1')) ELSE '[]'::jsonb END
FROM generate_series(1, 1000000) AS i
CROSS JOIN LATERAL (SELECT now() - i * interval '600 milliseconds' AS at) AS f
CROSS JOIN LATERAL (
    SELECT (CASE WHEN i % 100 < 95 THEN 'succeeded' WHEN i % 100 < 99 THEN 'failed'
                 ELSE 'cancelled' END)::pgq.job_state AS state
) AS s;

INSERT INTO pgq.jobs (queue, task, run_at, attempts, errors)
SELECT 'q' || (i % 5), 'task.' || (i % 20),
       CASE WHEN i % 10 = 0 THEN now() + i * interval '1 second'
            ELSE now() - i * interval '1 second' END,
       CASE WHEN i % 100 = 1 THEN 1 ELSE 0 END,
       CASE WHEN i % 100 = 1 THEN jsonb_build_array(jsonb_build_object(
           'attempt', 1, 'at', now() - interval '1 minute', 'kind', 'exception',
           'message', 'retry me', 'traceback', NULL, 'worker_id', 'w2')) ELSE '[]'::jsonb END
FROM generate_series(1, 100000) AS i;

INSERT INTO pgq.jobs (queue, task, state, attempts, lease_token, worker_id, started_at,
                      lease_expires_at)
SELECT 'q' || (i % 5), 'task.' || (i % 20), 'running', 1, 1, 'w' || (i % 4),
       now() - i * interval '1 second', now() + interval '30 seconds'
FROM generate_series(1, 100) AS i;

-- 8 live workers: two per queue q0-q3, each with every task registered; q4 has none, so
-- its queued jobs are orphaned (pgq.orphaned_jobs).
INSERT INTO pgq.workers (id, hostname, pid, version, queues, tasks, concurrency, running,
                         stale_after_seconds)
SELECT 'w' || i, 'host' || (i % 4), 1000 + i, '0.1.0', ARRAY['q' || (i % 4)],
       (SELECT jsonb_object_agg('task.' || t, 'q' || (i % 4)) FROM generate_series(0, 19) AS t),
       10, 3, 30
FROM generate_series(0, 7) AS i;
