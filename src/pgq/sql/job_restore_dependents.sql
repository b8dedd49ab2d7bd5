-- Resume a workflow after an operator retried failed (or cancelled) members: the jobs that
-- were cancelled because of them (an error of kind parent_failed or parent_cancelled, the
-- last one they got) go back to waiting, and so do their cancelled descendants. Run in the
-- same transaction as the retry (job_retry_many.sql, job_retry_failed.sql), right after
-- it; %(ids)s are the jobs it retried, queued again by it.
--
-- A cancelled job is restored unless another of its parents holds it back: one running
-- now, or one failed or cancelled (on an edge that needs success) and not retried here. It
-- and what follows it then stay cancelled, counted in `kept`. Why running: those parents'
-- states are read with FOR SHARE, which returns their newest versions and holds them
-- until this transaction ends, but a running parent's finish may already be in flight with
-- a snapshot from before this commit, in which the job is still cancelled: it would never
-- count the job down. A queued or waiting parent cannot finish without a claim first, and
-- the claim skips rows locked here (SKIP LOCKED), so its finish comes after this commit
-- and sees the job waiting. So: let a running member finish, then retry the failed one.
--
-- Each restored job waits for the parents retried or restored here and for those still
-- queued or waiting: parents_pending is their number (at least one).
WITH RECURSIVE retried AS (
    SELECT id
    FROM pgq.jobs
    WHERE id = ANY(%(ids)s::bigint[]) AND has_dependents AND state = 'queued'
), candidates(id) AS (
    SELECT d.child_id
    FROM retried AS r
    JOIN pgq.job_dependencies AS d ON d.parent_id = r.id
    JOIN pgq.jobs AS c ON c.id = d.child_id
    WHERE c.state = 'cancelled'
      AND c.errors -> -1 ->> 'kind' IN ('parent_failed', 'parent_cancelled')
    UNION
    SELECT d.child_id
    FROM candidates AS x
    JOIN pgq.job_dependencies AS d ON d.parent_id = x.id
    JOIN pgq.jobs AS c ON c.id = d.child_id
    WHERE c.state = 'cancelled'
      AND c.errors -> -1 ->> 'kind' IN ('parent_failed', 'parent_cancelled')
), parent_states AS MATERIALIZED (
    SELECT p.id, p.state
    FROM pgq.jobs AS p
    WHERE p.id = ANY(ARRAY(
        SELECT d.parent_id FROM pgq.job_dependencies AS d
        WHERE d.child_id IN (SELECT id FROM candidates)
    ))
    FOR SHARE
), blocked(id) AS (
    SELECT d.child_id
    FROM pgq.job_dependencies AS d
    JOIN parent_states AS p ON p.id = d.parent_id
    WHERE d.child_id IN (SELECT id FROM candidates)
      AND p.id NOT IN (SELECT id FROM retried)
      AND p.id NOT IN (SELECT id FROM candidates)
      AND (p.state = 'running'
           OR (NOT d.always AND p.state IN ('failed', 'cancelled')))
    UNION
    SELECT d.child_id
    FROM blocked AS b
    JOIN pgq.job_dependencies AS d ON d.parent_id = b.id
    WHERE d.child_id IN (SELECT id FROM candidates)
), restore AS (
    SELECT id FROM candidates
    EXCEPT
    SELECT id FROM blocked
), pending AS (
    SELECT d.child_id AS id, count(*)::int AS n
    FROM pgq.job_dependencies AS d
    JOIN parent_states AS p ON p.id = d.parent_id
    WHERE d.child_id IN (SELECT id FROM restore)
      AND (p.id IN (SELECT id FROM retried) OR p.id IN (SELECT id FROM restore)
           OR p.state IN ('queued', 'waiting'))
    GROUP BY d.child_id
), restored AS (
    UPDATE pgq.jobs AS j
    SET state = 'waiting', finished_at = NULL, parents_pending = p.n
    FROM pending AS p
    WHERE j.id = p.id AND j.state = 'cancelled'
    RETURNING j.id
)
SELECT (SELECT count(*) FROM restored) AS restored,
       (SELECT count(DISTINCT id) FROM blocked) AS kept
