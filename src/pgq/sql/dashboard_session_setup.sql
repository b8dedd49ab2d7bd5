-- Each dashboard connection, once: no JIT. The failures page reads pgq.recent_failures,
-- whose row estimate (every error of every job that has one) passes jit_above_cost on a
-- big table; compiling its plan took 20 ms of a 60 ms page and made nothing faster.
SELECT set_config('jit', 'off', false)
