-- pgq.wait hears of finished jobs it flagged here (job_flag_waited.sql); the payload is
-- the job id.
LISTEN pgq_finished
