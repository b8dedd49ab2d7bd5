-- Session settings of the worker's claim connection (which runs only job_claim.sql) and
-- of its writer connection (job_finish_many.sql, job_extend_leases.sql). plan_cache_mode:
-- plan each prepared statement once, not at every execution; planning took about half of
-- an idle worker's claim. The writer's outcomes need the generic plan's shape too (see
-- job_finish_many.sql). jit off: the generic claim plan's cost is estimated for an
-- unknown LIMIT (a tenth of the due rows), which on a large backlog passes
-- jit_above_cost, and compiling the plan then took 18 ms of a 20 ms claim.
SELECT set_config('plan_cache_mode', 'force_generic_plan', false),
       set_config('jit', 'off', false)
