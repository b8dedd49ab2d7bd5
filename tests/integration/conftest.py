"""Fixtures shared by the integration tests of enqueue (see also tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from enqueue_sessions import Listener


@pytest.fixture
def listener(db_url: str) -> Iterator[Listener]:
    """A connection LISTENing on pgq's channel, to see what an enqueue notifies."""
    opened = Listener(db_url)
    try:
        yield opened
    finally:
        opened.close()
