"""One settings tree: read once, one error type, the README's table matches what the tree reads."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from nl2sql_observability import settings as tree_module
from nl2sql_observability.audit import get_audit_log
from nl2sql_observability.logs import configure_logging
from nl2sql_observability.pricing import price_table
from nl2sql_observability.scrubbing import scrub
from nl2sql_observability.settings import (
    ConfigurationError,
    current_settings,
    load_all,
    setting_names,
    use_settings,
)

README = Path(__file__).resolve().parents[2] / "README.md"
# Rows of the README's settings table that the OTel SDK or launcher reads, not our tree.
OTEL_STANDARD = {
    "OTEL_SERVICE_NAME",
    "OTEL_PYTHON_DISTRO",
    "OTEL_SDK_DISABLED",
    "OTEL_PYTHON_LOG_AUTO_INSTRUMENTATION",
}


@pytest.fixture
def no_tree() -> Iterator[None]:
    use_settings(None)
    try:
        yield
    finally:
        use_settings(None)
        logging.getLogger().handlers[:] = [
            h for h in logging.getLogger().handlers if not getattr(h, "_nl2sql_obs_handler", None)
        ]


def _expand(cell: str) -> list[str]:
    """`A_B_C` (+ `_X_`/`_Y_`) -> A_B_C, A_B_X_C, A_B_Y_C; `A_B_C` / `_D_E` -> A_B_C, A_D_E."""
    tokens = re.findall(r"`([A-Z_]+)`", cell)
    base, names = tokens[0], [tokens[0]]
    for token in tokens[1:]:
        if not token.startswith("_"):
            names.append(token)
        elif "(+" in cell:
            head, _, tail = base.rpartition("_")
            names.append(f"{head}{token}{tail}")
        else:
            parts = base.split("_")
            names.append("_".join(parts[: len(parts) - len(token.strip("_").split("_"))]) + token)
    return names


def _readme_settings() -> list[str]:
    text = README.read_text(encoding="utf-8")
    table = text.split("| variable | default | meaning |", 1)[1].split("\n\n", 1)[0]
    names: list[str] = []
    for row in table.splitlines()[2:]:
        names += _expand(row.split("|")[1])
    return names


def test_the_readme_table_lists_exactly_the_settings_the_tree_reads() -> None:
    documented = _readme_settings()
    assert len(documented) == len(set(documented)), "a variable is listed twice"
    read = set(setting_names())
    assert len(read) == len(setting_names())
    assert set(documented) - OTEL_STANDARD == read


def test_the_expansion_of_the_readme_shorthand() -> None:
    assert _expand("`OTEL_EXPORTER_OTLP_ENDPOINT` (+ `_TRACES_`/`_LOGS_`)") == [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
    ]
    assert _expand("`OBSERVABILITY_CONTEXT_TENANT_KEY` / `_USER_KEY`") == [
        "OBSERVABILITY_CONTEXT_TENANT_KEY",
        "OBSERVABILITY_CONTEXT_USER_KEY",
    ]


def test_every_section_problem_is_one_configuration_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_tree: None
) -> None:
    bad = {
        "OBSERVABILITY_EXPORTER": "otlpp",
        "OBSERVABILITY_LOG_LEVEL": "LOUD",
        "OBSERVABILITY_SCRUB_IP": "maybe",
        "OBSERVABILITY_AUDIT_SINK": "postgres",
        "OBSERVABILITY_VALIDATOR_NODES": "a b",
        "OBSERVABILITY_PRICES_FILE": str(tmp_path / "missing.json"),
    }
    for name, value in bad.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError) as exc:
        load_all()
    message = str(exc.value)
    assert message.startswith("invalid observability configuration: ")
    assert message.count("invalid observability configuration") == 1
    for name in bad:
        assert name in message
    assert "\n" not in message
    assert current_settings() is None


def test_after_configure_the_environment_is_not_read_again(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_tree: None, capsys: pytest.CaptureFixture[str]
) -> None:
    audit_path = tmp_path / "audit" / "events.log"
    monkeypatch.setenv("OBSERVABILITY_EXPORTER", "none")
    monkeypatch.setenv("OBSERVABILITY_SCRUB_EXTRA_PATTERNS", '{"acme": "ACME-\\\\d{6}"}')
    monkeypatch.setenv("OBSERVABILITY_AUDIT_PATH", str(audit_path))
    monkeypatch.setenv("OBSERVABILITY_LOG_FORMAT", "json")
    monkeypatch.setenv("OBSERVABILITY_LOG_STREAM", "stderr")
    use_settings(load_all())
    table = price_table()

    # Every setting changes (some to values that would not even load) after start-up.
    monkeypatch.setenv("OBSERVABILITY_SCRUB_EXTRA_PATTERNS", "not json")
    monkeypatch.setenv("OBSERVABILITY_AUDIT_PATH", str(tmp_path / "elsewhere.log"))
    monkeypatch.setenv("OBSERVABILITY_AUDIT_SINK", "postgres")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "other-data"))
    monkeypatch.setenv("OBSERVABILITY_LOG_FORMAT", "xml")
    monkeypatch.setenv("OBSERVABILITY_LOG_STREAM", "stdout")
    monkeypatch.setenv("OBSERVABILITY_EXPORTER", "nonsense")
    monkeypatch.setenv("OBSERVABILITY_PRICES_FILE", str(tmp_path / "missing.json"))

    assert scrub("order ACME-123456") == "order [REDACTED:acme]"
    audit_log = get_audit_log()
    assert audit_log is not None
    assert audit_log.settings.resolved_path() == audit_path
    assert audit_log.settings.sink == "file"
    assert price_table() is table
    configure_logging()  # the bad OBSERVABILITY_LOG_FORMAT is not read: no error
    logging.getLogger("tree-test").warning("from the tree")
    out, err = capsys.readouterr()
    assert "from the tree" not in out
    assert '"message": "from the tree"' in err  # JSON, on stderr: the settings loaded at start-up

    # Without a tree (library use) the environment is read on first use again.
    use_settings(None)
    with pytest.raises(ConfigurationError):
        configure_logging()


def test_the_settings_module_imports_no_section_at_import_time() -> None:
    """The old logs <-> settings cycle: `settings` imports, at import time, only modules that import
    nothing of the package back (the error type and the exporters' section)."""
    source = Path(tree_module.__file__).read_text(encoding="utf-8")
    top_level = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
    ours = {line.split()[1] for line in top_level if "nl2sql_observability" in line}
    assert ours <= {"nl2sql_observability.errors", "nl2sql_observability.exporter_settings"}, ours


SECTIONS = (
    "audit/__init__.py",
    "audit/settings.py",
    "autoinstrument/__init__.py",
    "autoinstrument/settings.py",
    "log_settings.py",
    "logs.py",
    "pricing.py",
    "scrubbing/__init__.py",
    "scrubbing/settings.py",
    "scrubbing/_scrubber.py",
)


@pytest.mark.parametrize("section", SECTIONS)
def test_no_section_imports_the_settings_tree_back(section: str) -> None:
    """Settings are pushed: `settings.use_settings` hands each section to its owner, so no owner
    reaches up into `settings` (the old 13-file import circle), at import time or later."""
    source = (Path(tree_module.__file__).parent / section).read_text(encoding="utf-8")
    pulls = [
        line.strip()
        for line in source.splitlines()
        if ("nl2sql_observability.settings import" in line and "ObservabilitySettings" not in line)
        or "current_settings" in line
    ]
    assert not pulls, pulls


def test_the_configurator_takes_the_tree_the_distro_loaded(
    monkeypatch: pytest.MonkeyPatch, no_tree: None
) -> None:
    from nl2sql_observability import configurator
    from nl2sql_observability.distro import Nl2sqlDistro

    monkeypatch.setenv("OTEL_PYTHON_CONFIGURATOR", "nl2sql_observability")  # restored afterwards
    monkeypatch.setenv("OBSERVABILITY_ENVIRONMENT", "from-the-distro")
    Nl2sqlDistro()._configure()
    tree = current_settings()
    assert tree is not None
    assert tree.exporter.environment == "from-the-distro"

    def read_again() -> None:
        raise AssertionError("the settings were read a second time")

    monkeypatch.setattr(configurator, "load_all", read_again)
    monkeypatch.setenv("OBSERVABILITY_ENVIRONMENT", "changed")
    assert configurator._startup_settings() is tree


def test_without_the_distro_configure_reads_the_tree_once_and_keeps_it(
    monkeypatch: pytest.MonkeyPatch, no_tree: None
) -> None:
    from nl2sql_observability import configurator

    monkeypatch.setenv("OBSERVABILITY_ENVIRONMENT", "direct")
    loaded = configurator._startup_settings()
    tree = current_settings()
    assert tree is not None
    assert tree is loaded
    assert loaded.exporter.environment == "direct"


def test_an_empty_variable_means_unset_for_every_setting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_tree: None
) -> None:
    """`OBSERVABILITY_AUDIT_PATH=` once became `.`, `OBSERVABILITY_SCRUB_IP=` refused start-up: every
    variable of the tree, set empty, must load exactly as unset."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    for name in setting_names():
        monkeypatch.delenv(name, raising=False)
    unset = load_all()
    for name in setting_names():
        monkeypatch.setenv(name, "")
    empty = load_all()
    for section in ("exporter", "logging", "scrub", "audit", "instrumentor"):
        assert getattr(empty, section) == getattr(unset, section), section
    assert empty.audit.resolved_path() == tmp_path / "nl2sql-observability" / "audit" / "events.log"
