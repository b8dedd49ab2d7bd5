-- When the next start may be admitted for a rate key that has a due blocked job of our
-- queues and tasks: seconds from now (0 when one has room now), or NULL when no such job
-- waits. The worker sleeps that long at most (never longer than its poll interval), so an
-- idle worker does not spin on a queue whose keys are all at their limit. The keys come from
-- the blocked jobs (fragment_rate_keys_due.sql), as in the rated claim; a key whose row the
-- claim has not made again yet (see job_claim_rated.sql, `created`) has room: 0.
WITH RECURSIVE
-- pgq:include fragment_rate_keys_due
)
SELECT CASE WHEN count(*) > 0 THEN greatest(0, extract(epoch FROM min(
           CASE WHEN r.key IS NULL OR cardinality(r.starts) < r.max_starts
                THEN clock_timestamp()
                ELSE r.starts[cardinality(r.starts) - r.max_starts + 1]
                     + make_interval(secs => r.period) END
       ) - clock_timestamp()))::float8 END AS seconds
FROM due AS d
LEFT JOIN pgq.rate_limits AS r ON r.key = d.key
