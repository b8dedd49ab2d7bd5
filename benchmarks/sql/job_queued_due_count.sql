-- The backlog: queued jobs that are due now.
SELECT count(*) FROM pgq.jobs WHERE state = 'queued' AND run_at <= now()
