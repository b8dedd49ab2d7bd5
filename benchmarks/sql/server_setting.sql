-- One of the server's settings, e.g. autovacuum (the soak means little without it).
SELECT current_setting(%(name)s)
