-- Metrics scrape (pgq.metrics): per active schedule, its last success and last tick as
-- Unix times (0: never) and whether it is overdue. One row per schedule, read from
-- pgq.schedules and each schedule's last job by primary key: the cost follows the number
-- of schedules, never the jobs' history.
SELECT name,
       coalesce(extract(epoch FROM last_success_at), 0)::float8 AS last_success,
       coalesce(extract(epoch FROM last_tick_at), 0)::float8 AS last_tick,
       overdue
FROM pgq.schedule_status
WHERE active
ORDER BY name
