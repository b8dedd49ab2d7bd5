-- Every paused queue, oldest pause first. Workers run this once per poll interval: the table
-- holds one row per paused queue, so it costs one small scan.
SELECT queue, paused_at, reason
FROM pgq.queue_pauses
ORDER BY paused_at, queue
