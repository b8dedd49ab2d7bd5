-- The dashboard benchmark: one job marked succeeded (a workflow member, so its workflow's
-- page shows progress; its dependents stay waiting, which the page does not mind).
UPDATE pgq.jobs
SET state = 'succeeded', attempts = 1, started_at = now(), finished_at = now()
WHERE id = %(id)s
