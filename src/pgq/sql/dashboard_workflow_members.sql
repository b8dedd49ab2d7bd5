-- A workflow's page: its members (through jobs_workflow_idx), oldest first, each with the
-- ids of the jobs it waits for (through job_dependencies_child_idx), so the page can draw
-- the tree. No row: no workflow has this id.
SELECT j.id, j.queue, j.task, j.state::text, j.attempts, j.max_attempts, j.created_at,
       j.finished_at, j.errors -> -1 ->> 'message' AS last_error,
       coalesce(
           (SELECT array_agg(d.parent_id ORDER BY d.parent_id)
            FROM pgq.job_dependencies AS d
            WHERE d.child_id = j.id),
           '{}'::bigint[]
       ) AS parent_ids
FROM pgq.jobs AS j
WHERE j.workflow_id = %(workflow_id)s
ORDER BY j.id
LIMIT %(limit)s
