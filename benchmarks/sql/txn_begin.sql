-- Opens the latency scenario's enqueuing transaction on an autocommit connection, so that
-- txn_commit_then_clock.sql can end it and read the clock in one round trip.
BEGIN
