-- Make pgq.schedules say what this worker's code defines, in one statement: insert the new
-- schedules, update the ones whose definition changed (or that were inactive), and, when
-- %(deactivate_missing)s, mark inactive every active schedule the code no longer defines.
-- %(schedules)s is a JSON array of definitions (see periodic.py's _definition_json).
--
-- A row whose definition_hash already matches is left alone (no dead tuple per worker
-- start). A changed definition keeps last_tick_at: the new expression takes effect from
-- the first of its ticks after the last one enqueued. A schedule that becomes active again
-- starts afresh (active_since = now()): ticks it missed while inactive are never caught up.
-- Two workers syncing at once are serialised by the row locks of INSERT ... ON CONFLICT;
-- the one that commits last wins, and the tick statement only lets a worker with that
-- definition tick (see schedule_tick_many.sql).
WITH input AS (
    SELECT *
    FROM jsonb_to_recordset(%(schedules)s::jsonb) AS d(
        name text, task text, queue text, expression text, timezone text, args jsonb,
        priority smallint, max_attempts integer, catch_up integer, overlap text,
        grace_seconds float8, definition_hash text, next_tick_at timestamptz)
), upserted AS (
    INSERT INTO pgq.schedules AS s (
        name, task, queue, expression, timezone, args, priority, max_attempts, catch_up,
        overlap, grace, definition_hash, next_tick_at)
    SELECT name, task, queue, expression, timezone, args, priority, max_attempts, catch_up,
           overlap, make_interval(secs => grace_seconds), definition_hash, next_tick_at
    FROM input
    ON CONFLICT (name) DO UPDATE
    SET task = excluded.task,
        queue = excluded.queue,
        expression = excluded.expression,
        timezone = excluded.timezone,
        args = excluded.args,
        priority = excluded.priority,
        max_attempts = excluded.max_attempts,
        catch_up = excluded.catch_up,
        overlap = excluded.overlap,
        grace = excluded.grace,
        definition_hash = excluded.definition_hash,
        next_tick_at = excluded.next_tick_at,
        active = true,
        active_since = CASE WHEN s.active THEN s.active_since ELSE now() END,
        overdue_since = CASE WHEN s.active THEN s.overdue_since END,
        updated_at = now()
    WHERE s.definition_hash <> excluded.definition_hash OR NOT s.active
    RETURNING s.name, (s.xmax = 0) AS created
), deactivated AS (
    UPDATE pgq.schedules AS s
    SET active = false, next_tick_at = NULL, overdue_since = NULL, updated_at = now()
    WHERE %(deactivate_missing)s AND s.active AND s.name NOT IN (SELECT name FROM input)
    RETURNING s.name
)
SELECT name, CASE WHEN created THEN 'created' ELSE 'updated' END AS change FROM upserted
UNION ALL
SELECT name, 'deactivated' FROM deactivated
ORDER BY 1
