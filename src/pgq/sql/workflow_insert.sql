-- A whole workflow in one statement, in the caller's transaction: its jobs, each with its
-- parents, and the edges between them. The jobs arrive as one JSON array (as in
-- job_insert_many.sql); `parents` holds the positions (1-based) of a job's parents in that
-- array, always before it, and `always` says its edges count whatever the parents' outcome.
--
-- The ids are taken from the jobs' sequence first, in input order, so the edges can name
-- them in the same statement (that needs USAGE on pgq.jobs_id_seq, as enqueue_many's COPY
-- does). The workflow's id is its first job's. A job with parents starts as waiting, with
-- parents_pending counting them; the others are queued and notify their queue if due,
-- delivered at COMMIT like every enqueue.
WITH spec AS MATERIALIZED (
    SELECT s.*, nextval('pgq.jobs_id_seq') AS id
    FROM (
        SELECT j.*
        FROM ROWS FROM (
            jsonb_to_recordset(%(jobs)s::jsonb) AS (
                queue text, task text, args jsonb, priority smallint, run_at timestamptz,
                delay float8, max_attempts int, parents int[], always boolean,
                dependents boolean
            )
        ) WITH ORDINALITY AS j(queue, task, args, priority, run_at, delay, max_attempts,
                               parents, always, dependents, ord)
        ORDER BY j.ord
    ) AS s
), inserted AS (
    INSERT INTO pgq.jobs (id, queue, task, args, priority, run_at, max_attempts, state,
                          workflow_id, parents_pending, has_dependents)
    OVERRIDING SYSTEM VALUE
    SELECT s.id, s.queue, s.task, s.args, s.priority,
           coalesce(s.run_at, now() + make_interval(secs => s.delay)), s.max_attempts,
           CASE WHEN cardinality(s.parents) > 0 THEN 'waiting' ELSE 'queued' END::pgq.job_state,
           (SELECT min(id) FROM spec),
           nullif(cardinality(s.parents), 0),
           s.dependents
    FROM spec AS s
    ORDER BY s.ord
    RETURNING id, queue, run_at, state
), edges AS (
    INSERT INTO pgq.job_dependencies (parent_id, child_id, always)
    SELECT p.id, s.id, s.always
    FROM spec AS s
    CROSS JOIN LATERAL unnest(s.parents) AS u(ord)
    JOIN spec AS p ON p.ord = u.ord
    RETURNING 1
), notified AS (
    SELECT pg_notify('pgq', queue)
    FROM (SELECT DISTINCT queue FROM inserted WHERE state = 'queued' AND run_at <= now()) AS due
)
SELECT id, (SELECT count(*) FROM edges) AS edges, (SELECT count(*) FROM notified) AS notified
FROM inserted
ORDER BY id
