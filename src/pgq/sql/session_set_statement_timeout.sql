-- Bound the statements of the current transaction (is_local = true): the setting ends with
-- the transaction, so it never leaks into a connection a pooler such as PgBouncer hands to
-- someone else. (The `options` startup parameter would do the same, but PgBouncer refuses
-- it by default.)
SELECT set_config('statement_timeout', %(milliseconds)s::text, true)
