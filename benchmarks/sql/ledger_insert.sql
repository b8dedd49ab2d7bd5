-- A latency task's first act: record, on the server's clock, that it started.
INSERT INTO pgq_bench.ledger (job_id, started_at) VALUES (%(job_id)s, clock_timestamp())
