-- Write the successes of attempts that returned a value: state succeeded and the result,
-- in one statement for many jobs. Only jobs with a result come here (the worker sends the
-- others to job_finish_many.sql, unchanged), so a task returning None pays nothing for
-- results. Fenced and locked exactly like job_finish_many.sql: by the lease token the
-- attempt was claimed with and state = 'running', each row found by primary key; a stale
-- attempt's id is missing from RETURNING and its result is not written.
WITH held AS MATERIALIZED (
    SELECT d.id, d.result
    FROM unnest(%(ids)s::bigint[], %(tokens)s::bigint[], %(results)s::jsonb[])
         AS d(id, token, result)
    CROSS JOIN LATERAL (
        SELECT 1 FROM pgq.jobs
        WHERE id = d.id AND lease_token = d.token AND state = 'running'
        FOR UPDATE
    ) AS fenced
)
UPDATE pgq.jobs AS j
SET state = 'succeeded',
    finished_at = now(),
    result = h.result,
    lease_expires_at = NULL,
    cancel_requested = false
FROM held AS h
WHERE j.id = h.id
RETURNING j.id,
          CASE WHEN j.waited  -- a notification for pgq.wait; see job_finish_many.sql
               THEN j.state::text || pg_notify('pgq_finished', j.id::text)::text
               ELSE j.state::text END
