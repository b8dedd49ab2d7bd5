-- pgq.testing: every job gone and ids from 1 again, between a host app's tests. CASCADE
-- takes along rows of any table that references pgq.jobs.
TRUNCATE pgq.jobs RESTART IDENTITY CASCADE
