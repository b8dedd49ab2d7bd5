-- The limits page: every concurrency and rate limit in use, with the jobs blocked on it
-- (the pgq.flow_limits view, which counts each key's blocked jobs through its partial
-- index), keys with waiting jobs first, at most `limit` keys.
SELECT kind, key, max, period_seconds, in_use, waiting
FROM pgq.flow_limits
ORDER BY waiting DESC, in_use DESC, kind, key
LIMIT %(limit)s
