-- Pause a queue: workers stop claiming from it at their next poll, or at once when they hear
-- the NOTIFY. Pausing a paused queue keeps its paused_at (since when) and replaces the reason
-- when one is given. The payload '!pause' can never be a queue name ('!' is not allowed in
-- one), so workers tell it from an enqueue's wake-up.
WITH paused AS (
    INSERT INTO pgq.queue_pauses AS p (queue, reason)
    VALUES (%(queue)s, %(reason)s)
    ON CONFLICT (queue) DO UPDATE SET reason = coalesce(excluded.reason, p.reason)
    RETURNING p.queue, p.paused_at, p.reason
), notified AS (
    SELECT pg_notify('pgq', '!pause') FROM paused
)
SELECT queue, paused_at, reason, (SELECT count(*) FROM notified) AS notified
FROM paused
