-- Mark the schedules that just became overdue, and clear those that recovered, in one
-- statement; returns the newly overdue ones only: (name, task, queue, expression,
-- timezone, last_success_at, grace_seconds, last_job_id). Whichever worker's statement
-- marks a row reports it, and no other one does (the row is marked for the episode), so
-- an overdue schedule is logged and passed to the failure hooks once across the cluster.
-- %(names)s: the schedules this worker knows (it reports only schedules whose tasks it has).
WITH status AS (
    SELECT v.name, v.overdue, v.last_success_at, v.overdue_since
    FROM pgq.schedule_status AS v
    WHERE v.name = ANY(%(names)s::text[])
), recovered AS (
    UPDATE pgq.schedules AS s
    SET overdue_since = NULL
    FROM status AS v
    WHERE s.name = v.name AND s.overdue_since IS NOT NULL AND NOT v.overdue
    RETURNING s.name
), marked AS (
    UPDATE pgq.schedules AS s
    SET overdue_since = now()
    FROM status AS v
    WHERE s.name = v.name AND s.overdue_since IS NULL AND v.overdue
      AND s.active
    RETURNING s.name, s.task, s.queue, s.expression, s.timezone, v.last_success_at,
              extract(epoch FROM s.grace)::float8 AS grace_seconds, s.last_job_id
)
SELECT m.*, (SELECT count(*) FROM recovered) AS recovered
FROM marked AS m
ORDER BY m.name
