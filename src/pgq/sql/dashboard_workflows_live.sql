-- The workflows page: the newest `limit` unfinished workflows (a member waiting, queued or
-- running) from the pgq.workflow_progress view, which finds them through
-- jobs_workflow_live_idx and counts their members through jobs_workflow_idx: finished
-- workflows and plain jobs are never read.
SELECT workflow_id, total, waiting, queued, running, succeeded, failed, cancelled, created_at
FROM pgq.workflow_progress
ORDER BY workflow_id DESC
LIMIT %(limit)s
