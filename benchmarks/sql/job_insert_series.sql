-- Scenario 2's server floor: the same number of jobs inserted by one statement that makes
-- its rows on the server (no parameters to send, nothing to validate), so the figure is
-- what PostgreSQL alone needs for the rows and their index entries.
INSERT INTO pgq.jobs (queue, task, args)
SELECT 'default', %(task)s, jsonb_build_object('i', i)
FROM generate_series(1, %(n)s) AS i
