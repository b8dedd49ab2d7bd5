-- `pgq stats`: the queue_stats view (see the 0002 migration), one row per queue.
SELECT queue, ready, scheduled, running, failed, succeeded_last_hour, oldest_ready_seconds,
       per_minute_last_5m
FROM pgq.queue_stats
ORDER BY queue
