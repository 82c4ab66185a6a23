"""Every Python block of the README runs as written, under `opentelemetry-instrument` (as users run it),
and what it promises arrives: spans with the tenant of the example."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from otlp_receiver import otlp_receiver

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_readme_has_python_blocks() -> None:
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_python_block_runs_under_the_launcher(block: str, tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    app.write_text(block, encoding="utf-8")
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "OBSERVABILITY_", "NL2SQL_OBS_"))
    }
    with otlp_receiver() as (got, endpoint):
        env.update(
            OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
            OTEL_METRIC_EXPORT_INTERVAL="600000",
            XDG_DATA_HOME=str(tmp_path / "data"),
        )
        launcher = Path(sys.executable).parent / "opentelemetry-instrument"
        proc = subprocess.run(
            [str(launcher), sys.executable, str(app)],
            env=env, capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path,
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    roots = got.named("invoke_workflow nl2sql")
    assert len(roots) == 1
    assert roots[0].attributes["tenant.id"] == "acme"
    assert [s for s in got.spans if s.name.startswith("node ")]
