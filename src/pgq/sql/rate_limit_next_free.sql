-- When the next start may be admitted for a rate key that has a due blocked job of our
-- queues and tasks: seconds from now (0 when one has room now), or NULL when no such job
-- waits. The worker sleeps that long at most (never longer than its poll interval), so an
-- idle worker does not spin on a queue whose keys are all at their limit.
SELECT CASE WHEN count(*) > 0 THEN greatest(0, extract(epoch FROM min(
           CASE WHEN cardinality(r.starts) < r.max_starts THEN clock_timestamp()
                ELSE r.starts[cardinality(r.starts) - r.max_starts + 1]
                     + make_interval(secs => r.period) END
       ) - clock_timestamp()))::float8 END AS seconds
FROM pgq.rate_limits AS r
WHERE EXISTS (
    SELECT 1 FROM pgq.jobs AS j
    WHERE j.state = 'blocked' AND j.rate_key = r.key
      AND j.queue = ANY(%(queues)s::text[]) AND j.task = ANY(%(tasks)s::text[])
      AND j.run_at <= now()
)
