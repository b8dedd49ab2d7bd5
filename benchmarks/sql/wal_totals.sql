-- WAL written by the whole server since its statistics were reset: records and bytes
-- (drain_costs.py takes the difference across a drain, on a server nothing else writes to).
SELECT wal_records, wal_bytes FROM pg_stat_wal
