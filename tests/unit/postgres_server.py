"""A throwaway PostgreSQL server for one test module: initdb + pg_ctl from Debian's `postgresql` package
(no image to pull), in a temporary directory, listening on 127.0.0.1 only. initdb/postgres refuse to run
as root, so as root they run as the `postgres` user (runuser)."""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def _traversable_tmp() -> str | None:
    """A temporary directory the `postgres` user can reach (the default one may be root-only)."""
    for candidate in (tempfile.gettempdir(), "/var/tmp", "/dev/shm"):
        path = Path(candidate).resolve()
        # every folder on the way must be searchable by others (nox's TMPDIR may sit under a root-only /tmp)
        if path.is_dir() and all(os.stat(p).st_mode & 0o001 for p in (path, *path.parents)):
            return str(path)
    return None


def _with_reachable_preloads(base: Path) -> dict[str, str]:
    """The environment with LD_PRELOAD's libraries (the `future` session's libfaketime and its fixes)
    copied into `base`, so that the server runs a year ahead like the rest of the process tree: as the
    `postgres` user it may not reach them where they are (the checkout may sit in a root-only folder)."""
    env = dict(os.environ)
    libraries = re.split(r"[:\s]+", env.get("LD_PRELOAD", "").strip())
    if libraries != [""]:
        env["LD_PRELOAD"] = " ".join(
            str(shutil.copy(lib, base / f"{n}-{Path(lib).name}")) for n, lib in enumerate(libraries)
        )
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """Start a server; yields its libpq conninfo. Raises FileNotFoundError without PostgreSQL."""
    bin_dir = _bin_dir()
    if bin_dir is None:
        raise FileNotFoundError("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    as_root = os.geteuid() == 0
    prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
    base = Path(tempfile.mkdtemp(prefix="nl2sql-pg-", dir=_traversable_tmp() if as_root else None))
    data = base / "data"
    if as_root:
        shutil.chown(base, "postgres")
    port = _free_port()
    env = _with_reachable_preloads(base) if as_root else dict(os.environ)
    try:
        subprocess.run(
            [
                *prefix,
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
            ],
            check=True,
            capture_output=True,
            timeout=120,
            env=env,
        )
        options = f"-h 127.0.0.1 -p {port} -k {base} -c fsync=off"
        subprocess.run(
            [*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(base / "log"), "-w",
             "-t", "60", "start"],
            check=True,
            capture_output=True,
            timeout=90,
            env=env,
        )  # fmt: skip
        try:
            yield f"host=127.0.0.1 port={port} user=postgres dbname=postgres"
        finally:
            subprocess.run(
                [*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                capture_output=True,
                timeout=60,
                check=False,
                env=env,
            )
    finally:
        shutil.rmtree(base, ignore_errors=True)
