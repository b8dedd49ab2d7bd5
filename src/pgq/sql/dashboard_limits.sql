-- The limits page: each concurrency key (pgq.concurrency_keys, one row per key), its limit,
-- the slots in use (queued or running jobs holding one) and the jobs blocked on it now,
-- counted through jobs_blocked_idx (concurrency_key, id) of blocked jobs only. Keys with
-- blocked jobs first, at most `limit` keys.
SELECT k.key, k.max_active, k.active, coalesce(b.blocked, 0) AS blocked, b.oldest_blocked_id
FROM pgq.concurrency_keys AS k
LEFT JOIN (
    SELECT concurrency_key, count(*) AS blocked, min(id) AS oldest_blocked_id
    FROM pgq.jobs
    WHERE state = 'blocked'
    GROUP BY concurrency_key
) AS b ON b.concurrency_key = k.key
ORDER BY coalesce(b.blocked, 0) DESC, k.active DESC, k.key
LIMIT %(limit)s
