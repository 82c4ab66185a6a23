"""Tests that need the Grafana server itself. They run where the Grafana image exists (or can be
pulled) and skip elsewhere with the reason "no Grafana image on this machine" — the only skip CI
accepts. What Grafana queries is checked against the real Prometheus and Jaeger in test_2_demo.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest
import requests
from stackkit import GRAFANA_SKIP_REASON, ROOT, Stack, free_port, read_env_file, wait_until

GRAFANA_IMAGE = os.environ.get("GRAFANA_IMAGE") or read_env_file(ROOT / "compose" / ".env")["GRAFANA_IMAGE"]


def _have_grafana_image() -> bool:
    if (
        subprocess.run(
            ["docker", "image", "inspect", GRAFANA_IMAGE], capture_output=True, check=False
        ).returncode
        == 0
    ):
        return True
    pulled = subprocess.run(
        ["docker", "pull", "-q", GRAFANA_IMAGE], capture_output=True, check=False, timeout=300
    )
    return pulled.returncode == 0


@pytest.fixture(scope="module")
def grafana(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    if not _have_grafana_image():
        pytest.skip(GRAFANA_SKIP_REASON)
    password = "it-" + os.urandom(8).hex()
    secret = tmp_path_factory.mktemp("grafana-secret") / "pw"
    secret.write_text(password)
    stack.env.update(
        {
            "GRAFANA_IMAGE": GRAFANA_IMAGE,
            "GRAFANA_PORT": str(free_port()),
            "GRAFANA_ADMIN_PASSWORD_FILE": str(secret),
        }
    )
    stack.compose("up", "-d", "--wait", "grafana", timeout=300)
    url = f"http://127.0.0.1:{stack.env['GRAFANA_PORT']}"
    wait_until(lambda: requests.get(f"{url}/api/health", timeout=5).ok, timeout=120, what="Grafana healthy")
    yield url, password
    stack.compose("rm", "-s", "-f", "-v", "grafana", check=False)


def test_grafana_provisions_datasources_dashboards_and_alerts(grafana: tuple[str, str]) -> None:
    url, password = grafana
    auth = ("admin", password)
    s = requests.Session()
    s.trust_env = False
    ds = s.get(f"{url}/api/datasources", auth=auth, timeout=10)
    assert ds.status_code == 200, ds.text
    uids = {d["uid"] for d in ds.json()}
    assert {"prometheus", "jaeger", "victorialogs", "alertmanager"} <= uids
    boards = s.get(f"{url}/api/search", params={"type": "dash-db"}, auth=auth, timeout=10).json()
    assert {"nl2sql-overview", "nl2sql-slos"} <= {b["uid"] for b in boards}
    rules = s.get(f"{url}/api/v1/provisioning/alert-rules", auth=auth, timeout=10).json()
    assert {"nl2sql-slo-node-latency", "nl2sql-slo-sql-validation"} <= {r["uid"] for r in rules}
