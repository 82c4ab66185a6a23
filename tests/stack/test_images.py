"""Image versions: each local build (scripts/build-images.sh) is the pinned tag of compose/.env, or a
difference listed once, with its reason, in images/local-versions.txt."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .conftest import ROOT, load_yaml

ENV_FILE = ROOT / "compose" / ".env"
LOCAL_VERSIONS = ROOT / "images" / "local-versions.txt"


def _env() -> dict[str, str]:
    lines = ENV_FILE.read_text(encoding="utf-8").splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def _required(gomod: Path, module: str) -> str:
    m = re.search(rf"^\s*(?:require\s+)?{re.escape(module)} (v\S+)", gomod.read_text(encoding="utf-8"), re.M)
    assert m, f"{gomod.relative_to(ROOT)} does not require {module}"
    return m.group(1)


def _jaeger(v1: str) -> str:
    """Jaeger tags every release twice: v1.N.P and v2.(N-63).P (v1.76.0 is v2.13.0)."""
    major, minor, patch = (int(x) for x in v1.lstrip("v").split("."))
    assert major == 1, v1
    return f"2.{minor - 63}.{patch}"


def _prometheus(v0: str) -> str:
    """Prometheus' Go module tags v3.X.Y as v0.3XX.Y (v0.314.0 is v3.14.0)."""
    _, minor, patch = (int(x) for x in v0.lstrip("v").split("."))
    return f"v{minor // 100}.{minor % 100}.{patch}"


def built_versions() -> dict[str, str]:
    """The version each local build is made from, in the notation of the image tags."""
    tools = ROOT / "tools"
    return {
        "COLLECTOR_IMAGE": str(load_yaml(ROOT / "collector" / "manifest.yaml")["dist"]["version"]),
        "JAEGER_IMAGE": _jaeger(_required(tools / "jaeger" / "go.mod", "github.com/jaegertracing/jaeger")),
        "PROMETHEUS_IMAGE": _prometheus(
            _required(tools / "prometheus" / "go.mod", "github.com/prometheus/prometheus")
        ),
        "VICTORIALOGS_IMAGE": _required(
            tools / "victorialogs" / "go.mod", "github.com/VictoriaMetrics/VictoriaLogs"
        ),
    }


def listed() -> dict[str, tuple[str, str]]:
    out: dict[str, tuple[str, str]] = {}
    for line in LOCAL_VERSIONS.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            var, version, reason = line.split(maxsplit=2)
            assert var not in out, f"{var} listed twice"
            out[var] = (version, reason)
    return out


@pytest.mark.parametrize(("var", "built"), sorted(built_versions().items()))
def test_local_build_is_the_pinned_version_or_a_listed_difference(var: str, built: str) -> None:
    pinned = _env()[var].rsplit(":", 1)[1]
    differences = listed()
    if built == pinned:
        assert var not in differences, f"{LOCAL_VERSIONS.name}: stale line for {var} (the build is {pinned})"
        return
    assert var in differences, (
        f"the local {var} build is {built} but compose/.env pins {pinned}: "
        f"list the difference and why in {LOCAL_VERSIONS.relative_to(ROOT)}"
    )
    version, reason = differences[var]
    assert version == built, (
        f"{LOCAL_VERSIONS.name} says {var} builds {version}, the module files say {built}"
    )
    assert len(reason.split()) >= 5, f"{var}: say why the local build differs"


def test_every_listed_difference_names_a_built_image() -> None:
    assert set(listed()) <= set(built_versions())


def test_build_images_tags_local_builds_from_the_list_and_the_pins() -> None:
    """scripts/build-images.sh names no version itself: it takes them from the list and compose/.env."""
    script = (ROOT / "scripts" / "build-images.sh").read_text(encoding="utf-8")
    for version in {v for v, _ in listed().values()} | {
        t.rsplit(":", 1)[1] for t in _env().values() if ":" in t
    }:
        assert version not in script, f"build-images.sh repeats the version {version}"
