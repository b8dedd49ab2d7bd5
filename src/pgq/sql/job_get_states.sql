-- The current state of some jobs, to explain why an operator action skipped them.
SELECT id, state::text, unique_key
FROM pgq.jobs
WHERE id = ANY(%(ids)s::bigint[])
