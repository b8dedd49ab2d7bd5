-- A Procrastinate drain in database time, from its own event log: first 'started' to last
-- 'succeeded' of the jobs with ids first..last, and how many succeeded.
SELECT count(*) FILTER (WHERE type = 'succeeded'),
       extract(epoch FROM max(at) FILTER (WHERE type = 'succeeded')
                        - min(at) FILTER (WHERE type = 'started'))::float8
FROM procrastinate_events
WHERE job_id BETWEEN %(first)s AND %(last)s
