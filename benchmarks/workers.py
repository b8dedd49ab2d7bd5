"""Real ``pgq work`` processes for the worker-side scenarios.

Each worker is ``pgq work`` started from this interpreter (``pgq.cli.main``; not the
``pgq`` script, which PgQueuer's package also installs under that name in the peers' venv)
with the checkout as its working directory, so ``--app benchmarks.apps.noop`` imports.
Its stderr goes to a file whose tail is shown when something goes wrong.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.db import BenchError

ROOT = Path(__file__).resolve().parent.parent
PGQ_MAIN = "import sys; from pgq.cli import main; sys.argv[0] = 'pgq'; main()"
NOOP_APP = "benchmarks.apps.noop"
STOP_TIMEOUT = 60.0  # seconds a stopped worker gets to exit before it is killed
LOG_TAIL_CHARS = 2000


class WorkerProcess:
    """One ``pgq work`` subprocess; a context manager that always stops it."""

    def __init__(
        self,
        url: str,
        *args: str,
        app: str = NOOP_APP,
        env: dict[str, str] | None = None,
        command: list[str] | None = None,
        keep_log: Path | None = None,
    ) -> None:
        """``pgq work --app app *args`` on ``url``; ``command`` runs another queue's worker.

        ``keep_log``: move the worker's log there when it stops (else it is deleted).
        """
        self.url = url
        self.command = command or [sys.executable, "-c", PGQ_MAIN, "work", "--app", app, *args]
        self.env = {**os.environ, "PGQ_DATABASE_URL": url, **(env or {})}
        # Closed in __exit__: the log outlives this call, so no `with` here.
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115
            prefix="pgq-bench-worker-", suffix=".log", delete=keep_log is None
        )
        self.keep_log = keep_log
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> WorkerProcess:
        self.process = subprocess.Popen(
            self.command, cwd=ROOT, env=self.env, stdout=self._log, stderr=self._log
        )
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._log.close()
        if self.keep_log is not None:
            shutil.move(self._log.name, self.keep_log)

    @property
    def pid(self) -> int:
        assert self.process is not None, "the worker was not started"
        return self.process.pid

    def wait(self, timeout: float) -> int:
        """Wait for the worker to exit on its own (``--burst``); raise BenchError if it fails."""
        assert self.process is not None
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise BenchError(
                f"the worker did not finish within {timeout:.0f}s\n{self.log_tail()}"
            ) from None
        if code != 0:
            raise BenchError(f"the worker exited with {code}\n{self.log_tail()}")
        return code

    def check_alive(self) -> None:
        """Raise BenchError (with the worker's log) if the worker has exited."""
        assert self.process is not None
        if self.process.poll() is not None:
            raise BenchError(
                f"the worker exited early with {self.process.returncode}\n{self.log_tail()}"
            )

    def stop(self) -> None:
        """SIGTERM (a graceful stop), then SIGKILL if it does not exit in time."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def cpu_seconds(self) -> float:
        """User + system CPU time the worker has used so far."""
        seconds = process_cpu_seconds(self.pid)
        if seconds is None:
            raise BenchError(f"cannot read the CPU time of worker {self.pid}")
        return seconds

    def rss_mb(self) -> float:
        """Resident memory now (VmRSS), in MiB."""
        return read_status_kib(self.pid, "VmRSS") / 1024

    def peak_rss_mb(self) -> float:
        """Peak resident memory so far (VmHWM), in MiB."""
        return read_status_kib(self.pid, "VmHWM") / 1024

    def log_tail(self) -> str:
        self._log.flush()
        text = Path(self._log.name).read_text(errors="replace")
        return text[-LOG_TAIL_CHARS:]


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU time process ``pid`` has used so far, from Linux's
    /proc/<pid>/stat; None once it is gone (or off Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def backend_cpu_seconds(sessions: list[tuple[Any, ...]]) -> dict[int, tuple[str, float]]:
    """{pid: (application_name, CPU seconds so far)} of database sessions whose rows start
    with pid and application_name (session_activity.sql, pgq_backends.sql); a session
    without a name (the soak's enqueuer, its long transaction) is "other". Sessions whose
    backend is gone are left out."""
    found = {}
    for pid, name, *_ in sessions:
        seconds = process_cpu_seconds(pid)
        if seconds is not None:
            found[pid] = (name or "other", seconds)
    return found


def read_status_kib(pid: int, field: str) -> int:
    """A ``kB`` field of /proc/<pid>/status, e.g. VmRSS."""
    return parse_status_kib(Path(f"/proc/{pid}/status").read_text(), field)


def parse_status_kib(status: str, field: str) -> int:
    for line in status.splitlines():
        name, _, value = line.partition(":")
        if name == field:
            number, _, unit = value.strip().partition(" ")
            if unit != "kB":
                raise ValueError(f"{field} is in {unit!r}, expected kB")
            return int(number)
    raise ValueError(f"{field} is not in /proc/<pid>/status")
