-- The benchmark's own tables, beside pgq's schema in each scratch database.
-- floor_jobs: the "one-table queue" of scenario 1's floor, with the one index a queue needs.
-- ledger: when each latency job's task started, written by the task over its own connection.
CREATE SCHEMA pgq_bench;
CREATE TABLE pgq_bench.floor_jobs (
    id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue  text NOT NULL,
    task   text NOT NULL,
    args   jsonb NOT NULL,
    run_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX floor_jobs_claim_idx ON pgq_bench.floor_jobs (queue, run_at, id);
CREATE TABLE pgq_bench.ledger (
    job_id     bigint PRIMARY KEY,
    started_at timestamptz NOT NULL
);
