SELECT job_id, started_at FROM pgq_bench.ledger WHERE job_id = ANY(%(ids)s)
