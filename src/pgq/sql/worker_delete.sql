-- A worker leaving on a clean exit takes its row out of pgq.workers.
DELETE FROM pgq.workers
WHERE id = %(worker_id)s
