-- The newest job id (one step down the primary key), where the jobs page starts; NULL
-- when the table is empty.
SELECT max(id) FROM pgq.jobs
