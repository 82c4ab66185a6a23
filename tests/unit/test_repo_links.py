"""No link in the README, the docs, the code or the configs leaves the repository: the telemetry
contract they cite is docs/telemetry-contract.md, and every relative link resolves to a file here."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Places outside the repository that files have pointed to.
OUTSIDE = re.compile(r"\.\./shared\b|\bDESIGN\.md\b")
MD_LINK = re.compile(r"\]\(([^)\s]+)\)")


def _tracked() -> list[Path]:
    try:
        out = subprocess.run(
            ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True, timeout=30
        ).stdout
        files = [ROOT / line for line in out.splitlines()]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout (e.g. an sdist)
        files = [p for p in ROOT.rglob("*") if p.is_file() and ".git" not in p.parts]
    return [f for f in files if f.is_file() and f.suffix not in {".png", ".whl"} and f.name != "LICENSE"]


FILES = _tracked()


def test_there_are_files_to_check():
    names = {f.relative_to(ROOT).as_posix() for f in FILES}
    assert {"README.md", "docs/telemetry-contract.md", "pyproject.toml"} <= names


@pytest.mark.parametrize("path", FILES, ids=[f.relative_to(ROOT).as_posix() for f in FILES])
def test_no_reference_leaves_the_repository(path: Path):
    if path == Path(__file__):
        return
    text = path.read_text(encoding="utf-8", errors="replace")
    found = [m.group(0) for m in OUTSIDE.finditer(text)]
    assert not found, f"{path.relative_to(ROOT)} points outside the repository: {found}"
    if path.suffix != ".md":
        return
    for target in MD_LINK.findall(text):
        if target.startswith("#") or re.match(r"https?://(127\.0\.0\.1|localhost)[:/]", target):
            continue  # an anchor, or the local stack's own pages
        assert not re.match(r"[a-z]+:", target), f"{path.relative_to(ROOT)}: {target} leaves the repository"
        resolved = (path.parent / target.split("#")[0]).resolve()
        assert resolved.is_relative_to(ROOT), f"{path.relative_to(ROOT)}: {target} leaves the repository"
        assert resolved.exists(), f"{path.relative_to(ROOT)}: {target} does not exist"
