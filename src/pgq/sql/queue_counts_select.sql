-- Metrics scrape (pgq.metrics): per queue, the ready, scheduled and running jobs and how
-- long the oldest ready job has waited past its run_at.
--
-- Unlike the queue_stats view this reads only live rows, never the finished history: the
-- queued rows through the claim index (queue and run_at are in it, so the scan can be
-- index-only) and the running rows through the running index (a small set). A scrape
-- therefore costs the same on a table with millions of finished rows; its cost follows
-- the backlog alone. Paused queues come from pgq.queue_pauses (a row per paused queue);
-- jobs waiting for their parents in a workflow through jobs_workflow_live_idx (workflow
-- jobs not finished yet, state in the index).
WITH t AS (
    SELECT coalesce(%(now)s::timestamptz, now()) AS now
), counts AS (
    SELECT q.queue,
           count(*) FILTER (WHERE q.run_at <= t.now) AS ready,
           count(*) FILTER (WHERE q.run_at > t.now) AS scheduled,
           0 AS running,
           extract(epoch FROM t.now - min(q.run_at) FILTER (WHERE q.run_at <= t.now))::float8
               AS oldest_ready_seconds,
           false AS paused,
           0 AS waiting
    FROM pgq.jobs AS q, t
    WHERE q.state = 'queued'
    GROUP BY q.queue, t.now
    UNION ALL
    SELECT queue, 0, 0, count(*), NULL, false, 0
    FROM pgq.jobs
    WHERE state = 'running'
    GROUP BY queue
    UNION ALL
    SELECT queue, 0, 0, 0, NULL, true, 0
    FROM pgq.queue_pauses
    UNION ALL
    SELECT queue, 0, 0, 0, NULL, false, count(*)
    FROM pgq.jobs
    WHERE workflow_id IS NOT NULL AND state = 'waiting'
    GROUP BY queue
)
SELECT queue,
       sum(ready)::bigint AS ready,
       sum(scheduled)::bigint AS scheduled,
       sum(running)::bigint AS running,
       max(oldest_ready_seconds) AS oldest_ready_seconds,
       bool_or(paused) AS paused,
       sum(waiting)::bigint AS waiting
FROM counts
GROUP BY queue
ORDER BY queue
