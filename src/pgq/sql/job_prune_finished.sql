-- Delete up to `limit` finished jobs of one state whose finished_at is older than the
-- retention (seconds). Bounded, so a table with millions of old rows is pruned in many
-- short transactions instead of one long delete that holds locks and bloats the WAL.
-- The literal state list matches jobs_finished_stats_idx's predicate, so the planner can use
-- that index for any bound state, and it makes queued and running rows impossible to
-- delete whatever the caller passes. No ORDER BY: any rows past their time will do, and
-- leaving the order free lets the planner pick the cheapest path. A pruned workflow job
-- takes its edges (pgq.job_dependencies rows naming it as the child) with it.
-- SKIP LOCKED leaves rows someone is touching (an operator's retry) for a later pass;
-- the DELETE re-checks the row it locked, so one retried meanwhile is never deleted.
WITH doomed AS MATERIALIZED (
    SELECT id
    FROM pgq.jobs
    WHERE state IN ('succeeded', 'failed', 'cancelled')
      AND state = %(state)s::pgq.job_state
      AND finished_at < coalesce(%(now)s::timestamptz, now())
                        - make_interval(secs => %(retention)s::float8)
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), deleted AS (
    DELETE FROM pgq.jobs AS j
    USING doomed AS d
    WHERE j.id = d.id
      AND j.state IN ('succeeded', 'failed', 'cancelled')
      AND j.state = %(state)s::pgq.job_state
      AND j.finished_at < coalesce(%(now)s::timestamptz, now())
                          - make_interval(secs => %(retention)s::float8)
    RETURNING j.id, j.workflow_id
), edges AS (
    -- A workflow job's edges to its parents go with it (a child finishes after its
    -- parents, so it is pruned last); plain jobs have none and are not looked up.
    DELETE FROM pgq.job_dependencies AS d
    USING deleted
    WHERE deleted.workflow_id IS NOT NULL AND d.child_id = deleted.id
)
SELECT count(*) FROM deleted
