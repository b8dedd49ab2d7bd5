-- Metrics scrape (pgq.metrics): registered workers, alive and not (unseen past their bound,
-- not yet removed by the reaper). pgq.workers holds one row per worker.
SELECT count(*) FILTER (WHERE alive) AS alive,
       count(*) FILTER (WHERE NOT alive) AS stale
FROM pgq.worker_status
