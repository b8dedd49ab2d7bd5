"""pgq as a host application gets it: a wheel built from this checkout, installed into a
virtualenv of its own, for the tests that run example projects (examples/host_tests,
examples/fastapi_app) the way their users would.

Offline by design: the wheel is built without build isolation (no download of hatchling)
and installed with ``--no-deps --no-index``. pgq's dependencies (and the examples' test
tools) come from the environment running the tests, through a ``.pth`` file in the new
virtualenv; that file only adds a path, so this checkout's editable install of pgq (a
``.pth`` of its own there) is not processed and ``import pgq`` finds the wheel alone.
``pip check`` then proves the wheel's declared dependencies are all satisfied.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
_URL_VARIABLES = ("PGQ_DATABASE_URL", "DATABASE_URL", "PGQ_TEST_DATABASE_URL", "PYTHONPATH")


@dataclass(frozen=True)
class Venv:
    root: Path

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    @property
    def site_packages(self) -> Path:
        return Path(run([str(self.python), "-c", _PURELIB], clean_env()).stdout.strip())

    def bin(self, name: str) -> Path:
        return self.root / "bin" / name


_PURELIB = "import sysconfig; print(sysconfig.get_paths()['purelib'])"


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without database URLs or PYTHONPATH, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in _URL_VARIABLES}
    return {**env, **extra}


def run(
    command: list[str], env: dict[str, str], cwd: Path = ROOT, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


def checked(done: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert done.returncode == 0, (
        f"{done.args} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    )
    return done


def build_wheel(out: Path) -> Path:
    """pgq built as a wheel from this checkout into ``out``."""
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    checked(run([*command, "--quiet", "--wheel-dir", str(out), str(ROOT)], clean_env()))
    (found,) = out.glob("pgq_jobs-*.whl")
    return found


def make_venv(root: Path, wheel: Path) -> Venv:
    """A new virtualenv at ``root`` with ``wheel`` installed, its dependencies borrowed."""
    checked(run([sys.executable, "-m", "venv", "--without-pip", str(root)], clean_env()))
    venv = Venv(root)
    borrowed = sysconfig.get_paths()["purelib"]
    (venv.site_packages / "_borrowed_dependencies.pth").write_text(borrowed + "\n")
    pip = [sys.executable, "-m", "pip", "--python", str(venv.python)]
    checked(run([*pip, "install", "--quiet", "--no-deps", "--no-index", str(wheel)], clean_env()))
    checked(run([*pip, "check"], clean_env()))
    return venv
