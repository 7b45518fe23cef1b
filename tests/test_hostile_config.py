"""connector.yaml written by a hostile or careless hand: alias bombs, wrong types anywhere, duplicate keys,
deep nesting and huge files are each refused with one line (exit 2 from the CLI), fast and in little memory."""

from __future__ import annotations

import copy
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from file_connector_dagster.config import MAX_CONFIG_BYTES, load_config
from file_connector_dagster.errors import ConfigError

VALID: dict[str, Any] = {
    "store": {"type": "postgres", "dsn": "postgresql://app:${FC_HOSTILE_PW}@127.0.0.1:5432/inv"},
    "plugins": [{"type": "webhook", "url": "https://example.test/hook"}],
    "endpoints": [
        {"name": "share", "type": "local", "project_id": "p1", "user_id": "u1", "is_active": True,
         "endpoint_details": {"roots": ["data"], "containers": "subfolders", "include": ["*.pdf"],
                              "exclude": ["*.tmp"], "hash": True, "page_size": 10},
         "schedule": {"cron": "0 * * * *", "timezone": "Europe/Berlin"},
         "processors": [{"type": "glob_filter", "exclude": ["~$*"]}, {"type": "size_limit", "max_bytes": 100}]},
        {"name": "sp", "type": "sharepoint",
         "endpoint_details": {"tenant_id": "t", "client_id": "c", "client_secret": "${FC_HOSTILE_SECRET}",
                              "site_url": "https://contoso.sharepoint.com/sites/eng",
                              "document_library": ["Documents"], "page_size": 200, "max_wait_s": 5.0}},
    ],
}
WRONG_VALUES: list[Any] = [["local"], {"nested": {"x": 1}}, 12, None, True, 1.5, "", "x" * 10_000]


def paths(value: Any, prefix: tuple = ()) -> Iterator[tuple]:
    """Every key path of a nested structure, containers included."""
    if isinstance(value, dict):
        for key, child in value.items():
            yield prefix + (key,)
            yield from paths(child, prefix + (key,))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            yield prefix + (i,)
            yield from paths(child, prefix + (i,))


def replaced(path: tuple, new: Any) -> dict[str, Any]:
    raw = copy.deepcopy(VALID)
    target = raw
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = new
    return raw


def load_text(tmp_path: Path, text: str):
    path = tmp_path / "connector.yaml"
    path.write_text(text, encoding="utf-8")
    return load_config(path)


def one_line_error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, text)
    message = str(info.value)
    assert "\n" not in message and len(message) < 1000, message[:2000]
    return message


def test_the_base_config_is_valid(tmp_path):
    config = load_text(tmp_path, yaml.safe_dump(VALID))
    assert [e.name for e in config.endpoints] == ["share", "sp"]


def test_a_wrong_type_anywhere_is_one_line_never_a_crash(tmp_path):
    checked = refused = 0
    for path in paths(VALID):
        for wrong in WRONG_VALUES:
            text = yaml.safe_dump(replaced(path, wrong))
            try:
                load_text(tmp_path, text)
            except ConfigError as exc:
                # one line per problem (a replaced section can lack several fields), each short and
                # naming the file
                lines = str(exc).splitlines()
                assert 1 <= len(lines) <= 6, (path, wrong, lines)
                assert all(len(line) < 1000 and line.startswith(str(tmp_path / "connector.yaml")) for line in lines), \
                    (path, wrong, lines)
                refused += 1
            checked += 1
    assert checked > 300 and refused > checked // 2  # most wrong values are refused; the rest are valid alternatives


def test_type_as_a_list_names_endpoint_and_field(tmp_path):
    message = one_line_error(tmp_path, "endpoints:\n  - {name: docs, type: [local], endpoint_details: {roots: a}}\n")
    assert "endpoint 'docs'" in message and "type" in message
    # a name that is itself a structure is never echoed back
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, "endpoints:\n  - {name: [[a, b], {c: d}], type: [local]}\n")
    lines = str(info.value).splitlines()
    assert [line.split(": ")[1:3] for line in lines] == [["endpoints[0]", "name"], ["endpoints[0]", "type"]]


@pytest.mark.parametrize("where", ["name", "value", "key"])
def test_alias_bomb_is_refused_fast_and_small(tmp_path, where):
    levels = ["a: &a [" + ",".join(['"lol"'] * 10) + "]"]
    for n in range(1, 9):  # 10^9 strings once expanded
        prev, cur = chr(ord("a") + n - 1), chr(ord("a") + n)
        levels.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 10) + "]")
    body = {"name": "endpoints:\n  - {name: *i, type: local, endpoint_details: {roots: x}}\n",
            "value": "endpoints:\n  - {name: bomb, type: local, endpoint_details: {roots: *i}}\n",
            "key": "endpoints:\n  - {name: bomb, type: local, endpoint_details: {? *i : x}}\n"}[where]
    text = "x-anchors:\n" + "".join(f"  {line}\n" for line in levels) + body
    tracemalloc.start()
    started = time.perf_counter()
    try:
        message = one_line_error(tmp_path, text)
    finally:
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert "not valid YAML" in message and "expands to more than" in message
    assert elapsed < 5 and peak < 20 * 1024 * 1024, (elapsed, peak)


def test_a_few_aliases_are_still_fine(tmp_path):
    config = load_text(tmp_path, """
endpoints:
  - {name: a, type: local, endpoint_details: {roots: x}, processors: &procs [{type: size_limit, max_bytes: 100}]}
  - {name: b, type: local, endpoint_details: {roots: y}, processors: *procs}
""")
    assert [len(e.processors) for e in config.endpoints] == [1, 1]


def test_duplicate_keys_are_an_error(tmp_path):
    message = one_line_error(tmp_path, "endpoints:\n  - name: a\n    type: local\n    name: b\n"
                                       "    endpoint_details: {roots: x}\n")
    assert "duplicate key 'name'" in message and "line 4" in message
    message = one_line_error(tmp_path, "store: {type: sqlite}\nstore: {type: sqlite, path: other.db}\n")
    assert "duplicate key 'store'" in message


def test_deep_nesting_and_oversized_files_are_refused(tmp_path):
    message = one_line_error(tmp_path, "endpoints: " + "[" * 5000 + "]" * 5000 + "\n")
    assert "nested more than" in message
    big = "# padding\n" * (MAX_CONFIG_BYTES // 10 + 10)
    message = one_line_error(tmp_path, big)
    assert "larger than" in message


def test_cli_wrong_type_is_one_line_and_exit_2(tmp_path):
    path = tmp_path / "connector.yaml"
    path.write_text("endpoints:\n  - {name: docs, type: [local], endpoint_details: {roots: a}}\n")
    for command in ("validate", "sync", "status"):
        proc = subprocess.run([sys.executable, "-m", "file_connector_dagster.cli", command, "--config", str(path)],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, (command, proc.stderr)
        assert proc.stdout == "" and "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and "endpoint 'docs'" in proc.stderr
