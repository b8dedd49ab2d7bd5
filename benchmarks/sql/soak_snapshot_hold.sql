-- The long analytics query of the soak's second phase: under REPEATABLE READ its snapshot
-- lives until the transaction ends, so no row version deleted after it can be cleaned up
-- by any vacuum meanwhile. Returns the server's clock when the snapshot was taken.
SELECT clock_timestamp(), count(*) FROM pgq.jobs
