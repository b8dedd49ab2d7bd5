-- The jobs %(job_id)s waits (or waited) for in its workflow, oldest first: what a
-- dependent or a group's callback reads to see how its parents ended, and what they
-- returned (result: NULL unless succeeded with a value). Edges are found by
-- job_dependencies_child_idx, the parents by primary key.
SELECT p.id, p.task::text, p.state::text, p.finished_at, p.result
FROM pgq.job_dependencies AS d
JOIN pgq.jobs AS p ON p.id = d.parent_id
WHERE d.child_id = %(job_id)s
ORDER BY p.id
