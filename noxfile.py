"""Unit tests on every supported Python and on the lowest allowed dependencies (`make unit` runs these).

- `unit-3.10` ... `unit-3.13`: the package with its demo extra, locked by constraints.txt, on each
  Python that `requires-python` allows.
- `lowest`: exactly the lower bound of every runtime and demo dependency, read from pyproject.toml,
  on the oldest Python: the ranges promise these versions work.
Interpreters come from PATH, then from pyenv ($PYENV_ROOT/versions). With CI set a missing one is an
error, not a skip. `nox -r` reuses the virtualenvs between runs.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nox
from packaging.requirements import Requirement

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - nox runs from the project's .venv
    import tomli as tomllib

ROOT = Path(__file__).parent
PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
# What the unit tests import besides the package and its demo extra; versions from constraints.txt.
TEST_TOOLS = ["pytest", "pytest-timeout", "hypothesis"]

nox.options.sessions = [*(f"unit-{v}" for v in PYTHONS), "lowest"]
nox.options.error_on_missing_interpreters = "CI" in os.environ
nox.options.default_venv_backend = "venv"

# pyenv's own directories, so that `python3.X` is the interpreter itself, not a shim that may refuse.
_pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
_found = [str(p) for v in PYTHONS for p in sorted(_pyenv.glob(f"{v}.*/bin"))[-1:]]
os.environ["PATH"] = os.pathsep.join([*_found, os.environ.get("PATH", "")])


def _run_unit(session: nox.Session) -> None:
    session.run("python", "--version")
    session.run("python", "-m", "pytest", "tests/unit", "-q", "-p", "no:cacheprovider", *session.posargs)


@nox.session(python=PYTHONS, name="unit")
def unit(session: nox.Session) -> None:
    """The unit suite against the locked set."""
    session.install("-c", "constraints.txt", "-e", ".[demo]", *TEST_TOOLS)
    _run_unit(session)


def lowest_constraints() -> list[str]:
    """`name==lower bound` for every runtime and demo dependency of pyproject.toml."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = []
    for line in [*project["dependencies"], *project["optional-dependencies"]["demo"]]:
        req = Requirement(line)
        lower = [s.version for s in req.specifier if s.operator == ">="]
        if len(lower) != 1:
            raise SystemExit(f"noxfile: {line!r} needs one lower bound (>=) for the lowest session")
        pins.append(f"{req.name}=={lower[0]}")
    return pins


@nox.session(python=PYTHONS[0])
def lowest(session: nox.Session) -> None:
    """The unit suite against the lower bound of every range, on the oldest Python."""
    constraints = Path(session.create_tmp()) / "constraints-lowest.txt"
    constraints.write_text("\n".join(lowest_constraints()) + "\n")
    session.log("lower bounds: " + " ".join(lowest_constraints()))
    # Exact pins: a reused venv is moved to them whatever an earlier run installed.
    session.install("-c", str(constraints), "-e", ".[demo]", *TEST_TOOLS)
    _run_unit(session)
