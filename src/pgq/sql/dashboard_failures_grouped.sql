-- The failures page: the errors of the last 24 hours (the pgq.recent_failures view, which
-- reads only jobs with errors that are live or finished in that window) grouped by task,
-- exception type and message. Per group: how many errors, of how many jobs, how many of
-- those jobs are failed now, the newest error's time and job.
SELECT task,
       kind,
       left(message, 500) AS message,
       count(*) AS errors,
       count(DISTINCT job_id) AS jobs,
       count(DISTINCT job_id) FILTER (WHERE state = 'failed') AS failed_now,
       max(at) AS last_at,
       max(job_id) AS last_job_id
FROM pgq.recent_failures
WHERE (%(queue)s::text IS NULL OR queue = %(queue)s::text)
GROUP BY task, kind, left(message, 500)
ORDER BY max(at) DESC
LIMIT %(limit)s
