-- A job's page: the jobs it waits (or waited) for, through job_dependencies_child_idx, and
-- the jobs that wait for it, through the (parent_id, child_id) primary key; at most
-- `limit` of each.
(SELECT 'parent' AS relation, p.id, p.task, p.state::text
 FROM pgq.job_dependencies AS d
 JOIN pgq.jobs AS p ON p.id = d.parent_id
 WHERE d.child_id = %(job_id)s
 ORDER BY p.id
 LIMIT %(limit)s)
UNION ALL
(SELECT 'child', c.id, c.task, c.state::text
 FROM pgq.job_dependencies AS d
 JOIN pgq.jobs AS c ON c.id = d.child_id
 WHERE d.parent_id = %(job_id)s
 ORDER BY c.id
 LIMIT %(limit)s)
