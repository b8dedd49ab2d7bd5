-- The pgq.schedule_status view, one row per schedule, active ones first.
SELECT name, task, queue, expression, timezone, active, next_tick_at, last_tick_at,
       last_job_id, last_enqueued_at, last_outcome, last_outcome_at, last_success_at,
       last_skipped_at, skipped_ticks, extract(epoch FROM grace)::float8 AS grace_seconds,
       overdue, overdue_since
FROM pgq.schedule_status
ORDER BY NOT active, name
