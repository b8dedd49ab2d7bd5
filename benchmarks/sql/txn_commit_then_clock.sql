-- Two statements, one round trip (simple query protocol): COMMIT, then the server's clock
-- the moment the commit is done (flushed and visible, the NOTIFY sent). No client delay
-- sits between the two, however busy the machine, so the reading is the commit's time.
COMMIT;
SELECT clock_timestamp()
