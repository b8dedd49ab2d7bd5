"""Hooks the worker calls as jobs move, for metrics and other observers.

The worker calls every method on its event loop, so an implementation must be quick and
must not block (update counters; do I/O elsewhere). The base class does nothing.
"""

from __future__ import annotations

from pgq.runner import ClaimedJob


class WorkerEvents:
    """Subclass and override what you need; pass it as ``Worker(config, events=...)``."""

    def jobs_claimed(self, jobs: list[ClaimedJob]) -> None:
        """Jobs were claimed; ``job.lag`` is how long each was due before the claim."""

    def job_finished(self, job: ClaimedJob, outcome: str, seconds: float) -> None:
        """An attempt ended: outcome is succeeded, retried, failed, snoozed, cancelled or
        released (``failed`` also for a retry that used the last attempt)."""

    def lease_lost(self, job: ClaimedJob) -> None:
        """The worker learned it no longer holds ``job`` (heartbeat or outcome write)."""
