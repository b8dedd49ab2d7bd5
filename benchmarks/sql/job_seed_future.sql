-- Scenario 5: n jobs queued for later (tomorrow) in the queue being drained, so they sit
-- in the claim index next to the due ones.
INSERT INTO pgq.jobs (queue, task, args, run_at)
SELECT 'default', 'bench.noop', jsonb_build_object('i', i), now() + interval '1 day'
FROM generate_series(1, %(n)s) AS i
