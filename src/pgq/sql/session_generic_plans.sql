-- The claim connection's session settings (the worker's own connection, which runs only
-- job_claim.sql). plan_cache_mode: plan the prepared claim once, not at every execution;
-- planning took about half of an idle worker's claim. jit off: the generic plan's cost
-- is estimated for an unknown LIMIT (a tenth of the due rows), which on a large backlog
-- passes jit_above_cost, and compiling the plan then took 18 ms of a 20 ms claim.
SELECT set_config('plan_cache_mode', 'force_generic_plan', false),
       set_config('jit', 'off', false)
