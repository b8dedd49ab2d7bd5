"""Wake the worker when a job is enqueued: LISTEN on a dedicated connection.

Notifications are delivered at COMMIT, so a wake-up always finds the job. After every
(re)connect the worker is woken once as well, to poll for whatever was enqueued while the
connection was down.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import psycopg

from pgq import store
from pgq.db import ReconnectingConnection

log = logging.getLogger("pgq.worker")


class Listener:
    def __init__(self, url: str, queues: set[str], wake: Callable[[], None]) -> None:
        self._db = ReconnectingConnection(url, "listener")
        self._queues = queues
        self._wake = wake

    @property
    def reconnects(self) -> int:
        return self._db.reconnects

    async def run(self) -> None:
        """Listen until cancelled; connection errors reconnect, they never end the loop."""
        while True:
            try:
                await self._listen()
            except psycopg.Error as exc:
                log.warning("listener connection lost: %s", " ".join(str(exc).split()))
                await self._db.discard()

    async def _listen(self) -> None:
        conn = await self._db.connection()
        await store.fetch_async(conn, store.listen())
        self._wake()
        async for notify in conn.notifies():
            if notify.payload in self._queues:
                self._wake()

    async def close(self) -> None:
        await self._db.close()
