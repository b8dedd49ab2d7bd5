-- When one job finished, in the server's clock (the other end of the wait scenario's
-- latency is read from the same clock).
SELECT finished_at FROM pgq.jobs WHERE id = %(id)s
