-- The backends of pgq's worker connections on this database (application_name "pgq ...").
SELECT pid, application_name
FROM pg_stat_activity
WHERE datname = current_database() AND application_name LIKE 'pgq %'
