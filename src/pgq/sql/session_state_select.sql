-- What this server connection carries from one client to the next behind a pooler
-- (pgq.devbouncer.session_state): prepared statements, settings changed for the session,
-- LISTEN channels, advisory locks held outside a transaction, temporary tables.
-- A setting SET back to the value RESET would give (asyncpg turns jit off around its
-- type introspection, then SETs it on again) is marked 'session' but changes nothing.
SELECT ARRAY(SELECT name FROM pg_prepared_statements ORDER BY name),
       ARRAY(SELECT name || '=' || setting FROM pg_settings
             WHERE source = 'session' AND setting IS DISTINCT FROM reset_val ORDER BY name),
       ARRAY(SELECT pg_listening_channels()),
       (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()),
       (SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema())
