-- The table as autovacuum would leave it after a bulk load: visibility map and statistics.
VACUUM ANALYZE pgq.jobs
