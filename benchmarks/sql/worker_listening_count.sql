-- How many sessions on this database are listening for pgq's notifications (their last
-- statement was the LISTEN and they are idle, waiting): how the benchmark knows that
-- freshly started workers are ready.
SELECT count(*)
FROM pg_stat_activity
WHERE datname = current_database()
  AND state = 'idle'
  AND position('LISTEN pgq' IN query) > 0
