-- pgq.testing: the jobs a host app's test looks for, oldest first. A NULL filter means
-- "any"; %(args)s matches by containment (the job's args hold at least these keys with
-- these values). args and errors come back as text, so every driver (psycopg, asyncpg)
-- hands over the same thing to decode.
SELECT id, queue, task, state::text, priority, attempts, max_attempts, run_at, created_at,
       started_at, finished_at, worker_id, cancel_requested, lease_token, lease_expires_at,
       unique_key, args::text, errors::text
FROM pgq.jobs
WHERE (%(task)s::text IS NULL OR task = %(task)s::text)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
  AND (%(state)s::pgq.job_state IS NULL OR state = %(state)s::pgq.job_state)
  AND (%(args)s::jsonb IS NULL OR args @> %(args)s::jsonb)
ORDER BY id
LIMIT %(limit)s
