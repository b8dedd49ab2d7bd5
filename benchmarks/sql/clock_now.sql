-- The server's clock right now (not the transaction's start): both ends of a latency are
-- read from the same clock.
SELECT clock_timestamp()
