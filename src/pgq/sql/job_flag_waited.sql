-- pgq.wait asks to be notified when this job ends: the end of a queued, waiting (for its
-- parents in a workflow) or running job then sends pg_notify('pgq_finished', id)
-- (job_finish_many.sql and its siblings, the reaper, cancels, a parent's failure). The waiter
-- LISTENs first and reads the job's state after this, so a finish that commits at any
-- point is seen: before the flag, by that read; after it, by the notification (a finish
-- that waits for this row's lock re-reads the row and sees the flag).
-- A job already flagged, or finished, is left alone (no row version is written).
UPDATE pgq.jobs
SET waited = true
WHERE id = %(job_id)s AND state IN ('queued', 'waiting', 'running') AND waited IS NOT TRUE
