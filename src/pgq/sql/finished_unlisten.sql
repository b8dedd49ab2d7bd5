-- pgq.wait is done with a connection the caller lent it: leave no LISTEN behind.
UNLISTEN pgq_finished
