-- The database's clock (or %(now)s, for tests): the time every schedule decision uses.
SELECT coalesce(%(now)s::timestamptz, now()) AS now
