-- Completions per time bucket since the soak started, in database time: bucket k holds
-- the jobs that finished between start + k * width and start + (k + 1) * width seconds.
SELECT floor(extract(epoch FROM finished_at - %(start)s::timestamptz)
             / %(width)s::float8)::int AS bucket,
       count(*)
FROM pgq.jobs
WHERE state = 'succeeded' AND finished_at >= %(start)s::timestamptz
GROUP BY bucket
ORDER BY bucket
