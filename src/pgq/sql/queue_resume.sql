-- Resume a queue: workers claim from it again at their next poll, or at once on the NOTIFY.
-- Returns the pause that was lifted; no row when the queue was not paused.
WITH resumed AS (
    DELETE FROM pgq.queue_pauses
    WHERE queue = %(queue)s
    RETURNING queue, paused_at, reason
), notified AS (
    SELECT pg_notify('pgq', '!pause') FROM resumed
)
SELECT queue, paused_at, reason, (SELECT count(*) FROM notified) AS notified
FROM resumed
