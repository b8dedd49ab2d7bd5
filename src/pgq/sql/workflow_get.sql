-- `pgq workflow ID`: every job of the workflow that %(job_id)s belongs to (ID may be the
-- workflow's id, its first job's, or any member's), oldest first, with the ids of each
-- job's parents and its last error's message. Members are found by jobs_workflow_idx, the
-- edges by job_dependencies_child_idx. No row: the job is unknown or in no workflow.
SELECT j.id, j.task::text, j.queue::text, j.state::text, j.attempts, j.max_attempts,
       j.parents_pending, j.created_at, j.finished_at,
       ARRAY(SELECT d.parent_id FROM pgq.job_dependencies AS d
             WHERE d.child_id = j.id ORDER BY d.parent_id) AS parents,
       j.errors -> -1 ->> 'message' AS last_error
FROM pgq.jobs AS j
WHERE j.workflow_id = (SELECT workflow_id FROM pgq.jobs WHERE id = %(job_id)s)
ORDER BY j.id
