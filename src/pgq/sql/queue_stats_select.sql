-- `pgq stats`: the queue_stats view (see the 0002 migration), one row per queue, and whether
-- the queue is paused, and its jobs waiting for their parents in a workflow. A paused queue is listed even when it holds no jobs.
SELECT coalesce(s.queue, p.queue) AS queue,
       coalesce(s.ready, 0) AS ready,
       coalesce(s.scheduled, 0) AS scheduled,
       coalesce(s.running, 0) AS running,
       coalesce(s.failed, 0) AS failed,
       coalesce(s.succeeded_last_hour, 0) AS succeeded_last_hour,
       s.oldest_ready_seconds,
       coalesce(s.per_minute_last_5m, 0) AS per_minute_last_5m,
       p.queue IS NOT NULL AS paused,
       coalesce(s.waiting, 0) AS waiting
FROM pgq.queue_stats AS s
FULL JOIN pgq.queue_pauses AS p ON p.queue = s.queue
ORDER BY 1
