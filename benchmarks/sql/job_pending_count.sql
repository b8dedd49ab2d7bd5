-- Jobs not finished yet (queued or running), through the partial indexes. Due or not.
SELECT (SELECT count(*) FROM pgq.jobs WHERE state = 'queued')
     + (SELECT count(*) FROM pgq.jobs WHERE state = 'running')
