-- One batch of the pruner over pgq.concurrency_keys: of the next %(limit)s keys after
-- %(after)s (keyset pagination, so a table of any size is pruned in short statements and a
-- run always ends), delete the rows nothing needs any more: no job holds a slot (active =
-- 0), no job of the key is blocked, no wakeup for it waits, and no failed or cancelled job
-- of the key is left for `pgq retry` (its wakeup takes the row's limit, job_retry_many.sql).
-- Returns how many keys the batch looked at (fewer than the limit: the run is over), the
-- last of them (the next `after`) and how many rows it deleted.
--
-- A missing row is what a key never seen has: the next promotion pass creates it from the
-- newest wakeup's limit, with active = 0, which is right exactly when no job holds a slot.
-- So the one thing a deletion must never get wrong is `active`, and it is read under the
-- row's lock at its newest version:
-- * The row is locked FOR UPDATE SKIP LOCKED: a finish (fragment_concurrency_handover.sql)
--   or a promotion pass (concurrency_keys_unblock.sql) holding it now keeps it; neither
--   ever waits for us longer than this statement, and we never wait for them.
-- * One that committed after our snapshot changed the row: the lock re-reads its newest
--   version and re-checks `active = 0` on it, so a slot handed out (a promotion, a pass
--   that filled the key) since our snapshot keeps the row. A job holding a slot keeps
--   `active` above 0 until the statement that ends it updates this row, so a finish can
--   never meet a deleted row. The DELETE checks `active = 0` again on the row we locked.
-- * A limited enqueue (job_insert_blocked.sql, job_insert_many_blocked.sql) or a retry
--   never touches the row: it inserts a blocked job and a wakeup together. Seen by our
--   snapshot, they keep the row. Committed after it, they are not seen and the row may go:
--   the wakeup then makes the next pass create the row again (from the wakeup's limit) and
--   the pass after fill its slots, as for a new key. Nothing is lost, a pass is spent.
-- * A pass that blocks on our lock finds the row deleted when we commit, leaves its
--   wakeups for the next pass and creates the row (its INSERT ... ON CONFLICT waits for our
--   DELETE to commit, then inserts): the same as for a key seen for the first time.
-- * The blocked, final and wakeup checks read our snapshot, never a row's newest version:
--   they only spare rows that would be re-created at once, and a row whose key has a
--   failed job; they can keep a row too long, never delete one a slot count needs.
-- The wakeups table has no index on key: it is read once per batch (an anti-join), and it
-- is empty when nothing waits.
WITH scanned AS MATERIALIZED (
    SELECT key
    FROM pgq.concurrency_keys
    WHERE key > %(after)s::text
    ORDER BY key
    LIMIT %(limit)s
), idle AS MATERIALIZED (
    SELECT k.key
    FROM pgq.concurrency_keys AS k
    WHERE k.key = ANY(ARRAY(SELECT key FROM scanned))
      AND k.active = 0
      AND NOT EXISTS (
          SELECT 1 FROM pgq.jobs AS j  -- jobs_blocked_idx: `state > 'cancelled'` is blocked
          WHERE j.concurrency_key = k.key AND j.state > 'cancelled'
      )
      AND NOT EXISTS (
          SELECT 1 FROM pgq.jobs AS j  -- jobs_concurrency_final_idx
          WHERE j.concurrency_key = k.key AND j.state IN ('failed', 'cancelled')
      )
      AND NOT EXISTS (SELECT 1 FROM pgq.concurrency_wakeups AS w WHERE w.key = k.key)
    ORDER BY k.key
    FOR UPDATE OF k SKIP LOCKED
), deleted AS (
    DELETE FROM pgq.concurrency_keys AS k
    USING idle
    WHERE k.key = idle.key AND k.active = 0
    RETURNING k.key
)
SELECT (SELECT count(*) FROM scanned) AS scanned,
       (SELECT max(key) FROM scanned) AS last_key,
       (SELECT count(*) FROM deleted) AS deleted
