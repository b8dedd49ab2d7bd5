-- A PgQueuer drain in database time, from its own log: first 'picked' to last 'successful'
-- of the jobs with ids first..last, and how many succeeded.
SELECT count(*) FILTER (WHERE status = 'successful'),
       extract(epoch FROM max(created) FILTER (WHERE status = 'successful')
                        - min(created) FILTER (WHERE status = 'picked'))::float8
FROM pgqueuer_log
WHERE job_id BETWEEN %(first)s AND %(last)s
