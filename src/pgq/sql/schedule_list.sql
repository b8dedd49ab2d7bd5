-- The tick state of the schedules named in %(names)s, and the database's clock: every
-- decision about which ticks are due is made on this now() (or %(now)s, for tests), never
-- on a worker's clock. Returns (name, definition_hash, active, active_since, last_tick_at,
-- now) per schedule that exists.
SELECT s.name, s.definition_hash, s.active, s.active_since, s.last_tick_at,
       coalesce(%(now)s::timestamptz, now()) AS now
FROM pgq.schedules AS s
WHERE s.name = ANY(%(names)s::text[])
ORDER BY s.name
