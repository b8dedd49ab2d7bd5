-- A drain in database time: from the first claim (started_at is set at claim) to the last
-- completion, over the jobs with ids first..last (the id range scans the primary key,
-- whatever else the table holds).
SELECT count(*) FILTER (WHERE state = 'succeeded'),
       extract(epoch FROM max(finished_at) - min(started_at))::float8
FROM pgq.jobs
WHERE id BETWEEN %(first)s AND %(last)s
