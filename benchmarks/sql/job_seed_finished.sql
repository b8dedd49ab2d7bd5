-- Scenario 5: n jobs that succeeded over the last day, as a week of history would leave.
INSERT INTO pgq.jobs (queue, task, args, state, attempts, run_at, started_at, finished_at,
                      created_at)
SELECT 'default', 'bench.noop', jsonb_build_object('i', i), 'succeeded', 1,
       now() - i * interval '50 milliseconds', now() - i * interval '50 milliseconds',
       now() - i * interval '50 milliseconds' + interval '1 millisecond',
       now() - i * interval '50 milliseconds'
FROM generate_series(1, %(n)s) AS i
