-- The overview's table: the pgq.queue_stats view (one row per queue with live, failed or
-- recently finished jobs; cheap on a big table, docs/views.md) and each queue's pause. A
-- paused queue is listed even when it holds no job.
SELECT coalesce(s.queue, p.queue::text) AS queue,
       coalesce(s.ready, 0) AS ready,
       coalesce(s.scheduled, 0) AS scheduled,
       coalesce(s.waiting, 0) AS waiting,
       coalesce(s.running, 0) AS running,
       coalesce(s.failed, 0) AS failed,
       coalesce(s.succeeded_last_hour, 0) AS succeeded_last_hour,
       s.oldest_ready_seconds,
       coalesce(s.per_minute_last_5m, 0) AS per_minute_last_5m,
       p.paused_at,
       p.reason AS pause_reason
FROM pgq.queue_stats AS s
FULL JOIN pgq.queue_pauses AS p ON p.queue = s.queue
ORDER BY 1
