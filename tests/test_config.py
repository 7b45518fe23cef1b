"""connector.yaml validation: every mistake is one line naming the file, the endpoint and the field."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from file_connector_dagster.config import Secret, check_environment, load_config, redact
from file_connector_dagster.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "connector.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        config = load_config(write(tmp_path, text))
        check_environment(config, "connector.yaml")
    message = str(info.value)
    assert "\n" not in message
    return message


def test_valid_config_defaults_to_sqlite(tmp_path):
    config = load_config(write(tmp_path, """
        endpoints:
          - name: docs
            type: local
            endpoint_details: {roots: data}
            schedule: "*/15 * * * *"
    """))
    assert config.store.type == "sqlite"
    assert config.endpoints[0].schedules[0].cron == "*/15 * * * *"
    assert config.endpoints[0].schedules[0].timezone == "UTC" and config.endpoints[0].schedules[0].enabled
    assert config.resolve_path(config.store.path).parent.parent == tmp_path.resolve()


def test_missing_field_names_endpoint_and_field(tmp_path):
    message = error_of(tmp_path, """
        endpoints:
          - name: docs
            type: local
            endpoint_details: {}
    """)
    assert "connector.yaml" in message and "endpoint 'docs'" in message and "roots" in message


def test_duplicate_endpoint_name(tmp_path):
    message = error_of(tmp_path, """
        endpoints:
          - {name: docs, type: local, endpoint_details: {roots: a}}
          - {name: docs, type: local, endpoint_details: {roots: b}}
    """)
    assert "duplicate endpoint name 'docs'" in message


def test_unknown_type_lists_known_types(tmp_path):
    message = error_of(tmp_path, """
        endpoints:
          - {name: docs, type: dropbox, endpoint_details: {}}
    """)
    assert "endpoint 'docs'" in message and "unknown type 'dropbox'" in message and "local" in message


def test_bad_cron_and_time_zone(tmp_path):
    message = error_of(tmp_path, """
        endpoints:
          - {name: docs, type: local, endpoint_details: {roots: a}, schedule: "61 * * * *"}
    """)
    assert "endpoint 'docs'" in message and "schedule.cron" in message and "not a valid cron" in message
    message = error_of(tmp_path, """
        endpoints:
          - {name: docs, type: local, endpoint_details: {roots: a}, schedule: {cron: "0 * * * *", timezone: Mars/Base}}
    """)
    assert "schedule.timezone" in message and "Mars/Base" in message


def test_bad_name_and_unknown_processor(tmp_path):
    assert "name" in error_of(tmp_path, """
        endpoints:
          - {name: "Docs Folder", type: local, endpoint_details: {roots: a}}
    """)
    message = error_of(tmp_path, """
        endpoints:
          - {name: docs, type: local, endpoint_details: {roots: a}, processors: [{type: ocr}]}
    """)
    assert "endpoint 'docs'" in message and "unknown processor 'ocr'" in message


def test_unset_environment_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("FC_TEST_PG_PASSWORD", raising=False)
    message = error_of(tmp_path, """
        store: {type: postgres, dsn: "postgresql://app:${FC_TEST_PG_PASSWORD}@127.0.0.1/db"}
    """)
    assert "store.dsn" in message and "FC_TEST_PG_PASSWORD is not set" in message


def test_inline_secret_is_rejected_and_references_never_print_values(monkeypatch):
    from pydantic import BaseModel

    class Creds(BaseModel):
        secret: Secret

    with pytest.raises(Exception) as info:
        Creds(secret="hunter2-inline")
    assert "environment references" in str(info.value)
    monkeypatch.setenv("FC_TEST_SECRET", "s3cr3t-value-123")
    creds = Creds(secret={"env": "FC_TEST_SECRET"})
    assert repr(creds) .count("s3cr3t") == 0 and creds.model_dump(mode="json") == {"secret": "${FC_TEST_SECRET}"}
    assert creds.secret.resolve() == "s3cr3t-value-123"
    assert redact("token s3cr3t-value-123 leaked") == "token *** leaked"


def test_not_yaml_and_missing_file(tmp_path):
    assert "not valid YAML at line" in error_of(tmp_path, "endpoints: [\n  - {name: x\n")
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.yaml")


def test_cli_prints_one_line_without_traceback(tmp_path):
    path = write(tmp_path, """
        endpoints:
          - {name: docs, type: local, endpoint_details: {roots: a}, schedule: "not cron"}
    """)
    proc = subprocess.run([sys.executable, "-m", "file_connector_dagster.cli", "validate", "--config", str(path)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert "endpoint 'docs'" in lines[0] and "schedule.cron" in lines[0]


def test_every_problem_is_listed_one_line_each(tmp_path):
    path = write(tmp_path, """
        store: {type: sqlite, path: inv.db, colour: blue}
        endpoints:
          - {name: docs, type: local, endpoint_details: {containers: everything}, schedule: "61 * * * *"}
          - {name: "Bad Name", type: local, endpoint_details: {roots: a}, processors: [{type: ocr}]}
          - {name: drive, type: dropbox}
    """)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    lines = str(info.value).splitlines()
    assert all(line.startswith(f"{path}: ") for line in lines), lines
    expected = [
        "store.colour",
        "endpoint 'docs': endpoint_details.roots",
        "endpoint 'docs': endpoint_details.containers",
        "endpoint 'docs': schedule.cron",
        "endpoint 'Bad Name': processors[0].type: unknown processor 'ocr'",
        "endpoint 'Bad Name': name",
        "endpoint 'drive': type: unknown type 'dropbox'",
    ]
    for part in expected:
        assert sum(part in line for line in lines) == 1, (part, lines)
    assert len(lines) == len(expected)


def test_names_that_collide_in_dagster_are_rejected(tmp_path):
    message = error_of(tmp_path, """
        endpoints:
          - {name: my-docs, type: local, endpoint_details: {roots: a}}
          - {name: my_docs, type: local, endpoint_details: {roots: b}}
    """)
    assert "endpoint 'my_docs': name: 'my_docs' and 'my-docs' both become the Dagster name 'my_docs'" in message


def test_validate_lists_unset_variables_and_warns_for_inactive_endpoints(tmp_path, monkeypatch):
    from file_connector_dagster.cli import main as cli_main

    for name in ("FC_T_PW", "FC_T_SECRET", "FC_T_OTHER"):
        monkeypatch.delenv(name, raising=False)
    path = write(tmp_path, """
        store: {type: postgres, dsn: "postgresql://app:${FC_T_PW}@127.0.0.1/db"}
        endpoints:
          - name: site
            type: sharepoint
            is_active: false
            endpoint_details: {tenant_id: t, client_id: c, client_secret: "${FC_T_SECRET}",
                               site_url: "https://contoso.sharepoint.com/sites/x"}
    """)
    proc = subprocess.run([sys.executable, "-m", "file_connector_dagster.cli", "validate", "--config", str(path)],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.strip() == \
        f"error: {path}: store.dsn: environment variable FC_T_PW is not set"
    monkeypatch.setenv("FC_T_PW", "pw-value-1")
    proc = subprocess.run([sys.executable, "-m", "file_connector_dagster.cli", "validate", "--config", str(path)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == f"{path}: OK, 1 endpoint (0 active), store postgres"
    assert f"warning: {path}: endpoint 'site': endpoint_details.client_secret: environment variable FC_T_SECRET " \
           "is not set" in proc.stdout
