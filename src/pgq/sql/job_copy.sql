-- The second half of enqueue_many's COPY path, after job_ids_next.sql: the rows, with the
-- ids that statement allocated. Used only for batches without unique keys (COPY has no
-- ON CONFLICT) inside a transaction (two statements). Every job here is due now: run_at
-- takes its default, the transaction's now(), as job_insert_many.sql's coalesce() does.
COPY pgq.jobs (id, queue, task, args, priority, max_attempts) FROM STDIN
