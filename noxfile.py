"""Unit tests on every supported Python and on the lowest allowed dependencies (`make unit` runs these).

- `unit-3.10` ... `unit-3.13`: the package with its demo extra, locked by constraints.txt, on each
  Python that `requires-python` allows.
- `future`: the unit suite once more with the clock a year ahead for the whole process tree
  (libfaketime, Debian's `faketime`), so a test that depends on today's date shows itself.
- `lowest`: exactly the lower bound of every runtime and demo dependency, read from pyproject.toml,
  on the oldest Python: the ranges promise these versions work.
- `package`, `wheel`, `wheel_beside_app` (`make package`): build the sdist and wheel, check them, install
  the wheel alone into a fresh venv (newest versions within our ranges) and beside an app that pins
  opentelemetry-sdk, pydantic and langchain-core to other versions within them, and smoke-run it.
Interpreters come from PATH, then from pyenv ($PYENV_ROOT/versions). With CI set a missing one is an
error, not a skip. `nox -r` reuses the virtualenvs between runs.
"""

from __future__ import annotations

import os
import shutil
import sys
import zipfile
from pathlib import Path

import nox
from packaging.requirements import Requirement

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - nox runs from the project's .venv
    import tomli as tomllib

ROOT = Path(__file__).parent
PYTHONS = ["3.10", "3.11", "3.12", "3.13"]

DIST = ROOT / "dist"
PACKAGE = ROOT / "bootstrap" / "nl2sql_observability"
# An app with its own pins, older than our locked set and inside our ranges.
APP_PINS = ["opentelemetry-sdk==1.42.0", "pydantic==2.11.7", "langchain-core==1.5.0"]

nox.options.sessions = [*(f"unit-{v}" for v in PYTHONS), "lowest", "future"]
nox.options.error_on_missing_interpreters = "CI" in os.environ
nox.options.default_venv_backend = "venv"

# pyenv's own directories, so that `python3.X` is the interpreter itself, not a shim that may refuse.
_pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
_found = [str(p) for v in PYTHONS for p in sorted(_pyenv.glob(f"{v}.*/bin"))[-1:]]
os.environ["PATH"] = os.pathsep.join([*_found, os.environ.get("PATH", "")])


def _pip(session: nox.Session) -> None:
    """The locked pip: the pip 23 that Python 3.12.1's venv brings cannot resolve our ranges."""
    session.install("-c", "constraints.txt", "--upgrade", "pip")


def _run_unit(session: nox.Session, *options: str) -> None:
    session.run("python", "--version")
    # `nox -s unit-3.12 -- tests/unit/test_x.py -k y` runs just those
    tests = session.posargs or ["tests/unit"]
    session.run("python", "-m", "pytest", "-q", "-p", "no:cacheprovider", *options, *tests)


@nox.session(python=PYTHONS, name="unit")
def unit(session: nox.Session) -> None:
    """The unit suite against the locked set."""
    _pip(session)
    session.install("-c", "constraints.txt", "-e", ".[demo,test]")
    _run_unit(session)


# libfaketime moves the wall clock of every process that loads it (subprocesses inherit LD_PRELOAD and
# FAKETIME); monotonic clocks stay real, so timeouts and polling still measure real time. A small shim
# (tests/faketime/libfaketime_fixes.c, why in its header) is loaded first: it fixes what libfaketime
# itself breaks (monotonic sleeps, a closed stdin/stdout, CPython's GIL waits).
LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1")
FAKETIME_FIXES = ROOT / "tests" / "faketime" / "libfaketime_fixes.c"
FUTURE_OFFSET = "+365d"


@nox.session(python=PYTHONS[1])
def future(session: nox.Session) -> None:
    """The unit suite with the wall clock a year ahead: no test may depend on today's date."""
    if not LIBFAKETIME.exists():
        session.error(
            f"{LIBFAKETIME} is missing: install Debian's faketime (scripts/ci-prerequisites.sh does)"
        )
    shim = Path(session.create_tmp()) / "libfaketime_fixes.so"
    compile_shim = ["cc", "-shared", "-fPIC", "-O2", "-Wall", "-Werror", "-o", str(shim), str(FAKETIME_FIXES)]
    session.run(*compile_shim, "-ldl", external=True)
    _pip(session)
    session.install("-c", "constraints.txt", "-e", ".[demo,test]")
    env = {
        "LD_PRELOAD": f"{shim} {LIBFAKETIME}",
        "FAKETIME": FUTURE_OFFSET,
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }
    # the clock is a year ahead and each repair of the shim holds, or the session stops here
    session.run("python", str(FAKETIME_FIXES.with_name("check_fixes.py")), env=env)
    tests = session.posargs or ["tests/unit"]
    session.run("python", "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests, env=env)


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


# The other LangChain instrumentors of the coexistence tests need a newer OpenTelemetry than our lower
# bound, so the lowest session leaves them and those tests out; the locked sessions run them.
OTHER_INSTRUMENTORS = {"openinference-instrumentation-langchain", "opentelemetry-instrumentation-langchain"}
COEXISTENCE_TESTS = "tests/unit/test_zero_code_coexistence.py"


@nox.session(python=PYTHONS[0])
def lowest(session: nox.Session) -> None:
    """The unit suite against the lower bound of every range, on the oldest Python."""
    constraints = Path(session.create_tmp()) / "constraints-lowest.txt"
    constraints.write_text("\n".join(lowest_constraints()) + "\n")
    session.log("lower bounds: " + " ".join(lowest_constraints()))
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    tools = [
        r for r in project["optional-dependencies"]["test"] if Requirement(r).name not in OTHER_INSTRUMENTORS
    ]
    # Exact pins: a reused venv is moved to them whatever an earlier run installed.
    _pip(session)
    session.install("-c", str(constraints), "-e", ".[demo]", *tools)
    _run_unit(session, "--ignore", COEXISTENCE_TESTS)


@nox.session(python=PYTHONS[-1])
def package(session: nox.Session) -> None:
    """Build the sdist and the wheel into dist/, `twine check` them, check the wheel's file list."""
    session.install("-c", "constraints.txt", "build", "twine")
    shutil.rmtree(DIST, ignore_errors=True)
    session.run("python", "-m", "build", "--outdir", str(DIST), str(ROOT))
    session.run("twine", "check", "--strict", *(str(f) for f in sorted(DIST.iterdir())))
    problems = wheel_listing_problems(_wheel())
    if problems:
        session.error("the wheel's files are wrong:\n  " + "\n  ".join(problems))
    session.log(f"{_wheel().name}: files as expected")


def _wheel() -> Path:
    wheels = sorted(DIST.glob("nl2sql_observability-*.whl"))
    if len(wheels) != 1:
        raise SystemExit(
            f"noxfile: expected one wheel in {DIST}, found {len(wheels)}: run `nox -s package` first"
        )
    return wheels[0]


def wheel_listing_problems(wheel: Path) -> list[str]:
    """The wheel holds exactly the package's files (every module, py.typed, any data file), its
    metadata with the LICENSE and entry points, and nothing else (no tests, no repository files)."""
    names = set(zipfile.ZipFile(wheel).namelist())
    source = {
        f"nl2sql_observability/{p.relative_to(PACKAGE).as_posix()}"
        for p in PACKAGE.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }
    dist_info = {n for n in names if n.split("/")[0].endswith(".dist-info")}
    problems = [f"missing: {n}" for n in sorted(source - names)]
    problems += [f"not ours: {n}" for n in sorted(names - source - dist_info)]
    if not any(n.endswith(".dist-info/licenses/LICENSE") for n in dist_info):
        problems.append("no LICENSE in the .dist-info")
    entry_points = next((n for n in dist_info if n.endswith("entry_points.txt")), None)
    text = zipfile.ZipFile(wheel).read(entry_points).decode() if entry_points else ""
    for wanted in ("[opentelemetry_distro]", "[opentelemetry_configurator]", "nl2sql-obs = "):
        if wanted not in text:
            problems.append(f"entry_points.txt lacks {wanted!r}")
    return problems


def _smoke(session: nox.Session) -> None:
    """What a user runs first: the CLI's help, then the demo under the launcher with console export."""
    tmp = Path(session.create_tmp())
    session.chdir(tmp)  # not the repository: only the installed wheel can be imported
    session.run("python", "-m", "pip", "check")
    session.run("nl2sql-obs", "--help", silent=True)
    env = {
        "OBSERVABILITY_EXPORTER": "console",
        "XDG_DATA_HOME": str(tmp / "data"),
        "OBSERVABILITY_AUDIT_PATH": str(tmp / "audit" / "events.log"),
    }
    out = session.run(
        "opentelemetry-instrument",
        "nl2sql-obs",
        "demo",
        "--requests",
        "3",
        "--time-scale",
        "0",
        "--no-progress",
        "--db",
        str(tmp / "demo.sqlite3"),
        env=env,
        silent=True,
    )
    spans = str(out).count('"name": "invoke_workflow nl2sql"')
    if spans != 3:
        session.error(f"expected 3 workflow spans on the console, saw {spans}:\n{str(out)[-2000:]}")
    session.log("smoke run: 3 requests, 3 workflow spans exported")


# reuse_venv=False: a fresh venv every run, whatever `nox -r` says (a reused one would keep an older
# install of the same version).
@nox.session(python=PYTHONS[-2], reuse_venv=False)
def wheel(session: nox.Session) -> None:
    """The wheel with its demo extra, alone in a fresh venv: newest versions within our ranges."""
    _pip(session)
    session.install(f"{_wheel()}[demo]")
    _smoke(session)


@nox.session(python=PYTHONS[-2], reuse_venv=False)
def wheel_beside_app(session: nox.Session) -> None:
    """The wheel installed into an app that pins its own versions (within our ranges): they are kept."""
    _pip(session)
    session.install(*APP_PINS, f"{_wheel()}[demo]")  # one resolution, as from an app's requirements file
    for pin in APP_PINS:
        name, version = pin.split("==")
        check = f"from importlib.metadata import version as v; assert v({name!r}) == {version!r}, v({name!r})"
        session.run("python", "-c", check)
    _smoke(session)
