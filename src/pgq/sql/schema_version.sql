-- The schema version the migrations wrote into the schema's comment ("pgq schema N").
-- Read from the catalog so it answers (NULL) instead of failing when pgq was never
-- migrated, and works whichever alembic version table the migrations were recorded in.
SELECT substring(obj_description(n.oid, 'pg_namespace') FROM '^pgq schema ([0-9]+)')::int
       AS version
FROM pg_namespace AS n
WHERE n.nspname = 'pgq'
