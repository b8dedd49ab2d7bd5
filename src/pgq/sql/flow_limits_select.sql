-- `pgq limits` and the limit gauges: the pgq.flow_limits view, the keys with the most jobs
-- waiting first, at most %(limit)s rows (a per-customer key may have millions of rows).
SELECT kind, key, max, period_seconds, in_use, waiting
FROM pgq.flow_limits
ORDER BY waiting DESC, in_use DESC, kind, key
LIMIT %(limit)s
