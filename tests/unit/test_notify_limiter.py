"""The enqueue-side NOTIFY limiter: at most one NOTIFY per queue per interval, per process."""

from __future__ import annotations

from pgq.enqueue import NotifyLimiter


def test_the_first_enqueue_of_a_queue_notifies() -> None:
    assert NotifyLimiter(interval=0.01).allow("emails", now=100.0)


def test_a_second_enqueue_within_the_interval_does_not() -> None:
    limiter = NotifyLimiter(interval=0.01)
    assert limiter.allow("emails", now=100.0)
    assert not limiter.allow("emails", now=100.009)


def test_the_interval_counts_from_the_last_notify_sent() -> None:
    limiter = NotifyLimiter(interval=0.01)
    assert limiter.allow("emails", now=100.0)
    assert not limiter.allow("emails", now=100.005)  # muted: does not restart the interval
    assert limiter.allow("emails", now=100.010)


def test_queues_are_limited_independently() -> None:
    limiter = NotifyLimiter(interval=0.01)
    assert limiter.allow("emails", now=100.0)
    assert limiter.allow("billing", now=100.001)


def test_reset_forgets_every_queue() -> None:
    limiter = NotifyLimiter(interval=10.0)
    limiter.allow("emails", now=100.0)
    limiter.reset()
    assert limiter.allow("emails", now=100.001)
