"""`pgq --version` and `python -m pgq --version` print the version and where pgq lives (so
a user with PgQueuer installed too can tell which `pgq` answered), and exit 0."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import pgq

PACKAGE = Path(pgq.__file__).parent
EXPECTED = f"pgq {pgq.__version__} (pgq-jobs, {PACKAGE})"


def console_script() -> list[str]:
    script = Path(sys.executable).parent / "pgq"
    if not script.exists():
        pytest.skip(f"no pgq console script beside {sys.executable} (pip install -e . makes it)")
    return [str(script)]


@pytest.mark.parametrize("how", ["python -m pgq", "pgq"])
def test_version_names_the_release_and_the_package(how: str) -> None:
    command = [sys.executable, "-m", "pgq"] if how == "python -m pgq" else console_script()

    done = subprocess.run(
        [*command, "--version"], capture_output=True, text=True, timeout=60, check=False
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == EXPECTED


def test_version_wins_over_a_command() -> None:
    # Eager: `pgq --version work` prints the version, it does not start a worker.
    done = subprocess.run(
        [sys.executable, "-m", "pgq", "--version", "work", "--app", "nowhere"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert (done.returncode, done.stdout.strip()) == (0, EXPECTED)
