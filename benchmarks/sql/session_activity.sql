-- What every other session on this database is doing (the worker's connections, a long
-- transaction): the soak keeps this with each sample, so a stall can be explained later.
SELECT pid, application_name, state, wait_event_type, wait_event,
       extract(epoch FROM clock_timestamp() - xact_start)::float8 AS xact_s,
       extract(epoch FROM clock_timestamp() - query_start)::float8 AS query_s,
       age(backend_xmin) AS xmin_age,
       left(regexp_replace(query, '\s+', ' ', 'g'), 80) AS query
FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()
ORDER BY application_name, pid
