-- The channel enqueue notifies on; the payload is the queue name.
LISTEN pgq
