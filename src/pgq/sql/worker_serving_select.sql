-- pgq enqueue's check: does a live worker serve this task on this queue? Returns
-- (served, the queues live workers serve the task on, how many workers are alive).
WITH alive AS (
    SELECT queues, tasks
    FROM pgq.workers
    WHERE last_seen_at >= now() - make_interval(secs => stale_after_seconds)
), serving AS (
    SELECT queues FROM alive WHERE tasks ? %(task)s::text
)
SELECT EXISTS (SELECT 1 FROM serving WHERE %(queue)s::text = ANY (queues)) AS served,
       ARRAY(SELECT DISTINCT q FROM serving, unnest(serving.queues) AS q ORDER BY q) AS queues,
       (SELECT count(*) FROM alive) AS alive
