-- The job detail page: the whole row as JSON, so columns that later migrations add
-- (a result, parents, a batch) reach the page without a new statement, and the database's
-- now() so the page says "expires in 20 s" in database time, never the web server's.
SELECT to_jsonb(j), now()
FROM pgq.jobs AS j
WHERE id = %(job_id)s
