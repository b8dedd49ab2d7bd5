SELECT count(*) FROM pgq_bench.ledger
