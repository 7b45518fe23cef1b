"""The inventory report and exports, read in chunks out of every store."""

from __future__ import annotations

import csv
import json
from datetime import datetime, timedelta, timezone
from typing import Iterator, Mapping

import pandas as pd
import pytest

from file_connector_dagster.engine import sync_container
from file_connector_dagster.errors import ConfigError
from file_connector_dagster.inventory import export, summarize
from file_connector_dagster.records import ChangePage, FileRecord, Folder
from file_connector_dagster.sources.base import Container, Health, Source

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc)


class ListSource(Source):
    """One container whose files are given as a list; one full listing, in pages."""

    type_name = "list"
    Details = None  # type: ignore[assignment]

    def __init__(self, records: list[FileRecord], page: int = 250):
        super().__init__("inv", None)  # type: ignore[arg-type]
        self.records, self.page = records, page

    def containers(self) -> list[Container]:
        return sorted({Container(r.container, r.container) for r in self.records}, key=lambda c: c.key)

    def health(self) -> Health:
        return Health(ok=True)

    def sync(self, container: str, cursor: str | None, folders: Mapping[str, Folder]) -> Iterator[ChangePage]:
        mine = [r for r in self.records if r.container == container]
        for start in range(0, len(mine), self.page):
            yield ChangePage(upserts=mine[start:start + self.page], cursor=str(start), full_listing=True,
                             last=start + self.page >= len(mine))


def inventory(n: int = 600) -> list[FileRecord]:
    records = []
    for i in range(n):
        container = "drawings" if i % 3 else "contracts"
        folder = ("Level 1", "Level 2", "Archive")[i % 3]
        title = f"f{i}" + (".pdf" if i % 2 else ".dwg")
        meta: dict = {}
        if i % 50 == 0:
            meta = {"processors": {"dedupe": {"duplicate_of": "f1"}}}
        records.append(FileRecord(
            f"id-{i}", title, f"{folder}/sub/{title}", container=container, change_key="v1", size=1000 + i,
            date_updated=NOW - timedelta(days=(i * 7) % 2000), metadata=meta,
            excluded_by="virustotal" if i == 7 else None, processing_errors=["boom"] if i == 8 else []))
    records.append(FileRecord("root-file", "readme.txt", "readme.txt", container="contracts", change_key="v1",
                              size=None, date_updated=None))
    return records


@pytest.fixture
def filled(store):
    records = inventory()
    source = ListSource(records)
    for container in ("contracts", "drawings"):
        sync_container(source, store, container)
    # what processors decided (excluded, errors) is written by the processing step, not the listing
    wanted = {r.external_id: r for r in records if r.excluded_by or r.processing_errors}
    stored = [r for c in ("contracts", "drawings") for page in store.iter_files("inv", c) for r in page
              if r.external_id in wanted]
    for r in stored:
        r.excluded_by, r.processing_errors = wanted[r.external_id].excluded_by, wanted[r.external_id].processing_errors
        r.processing_status = "skipped" if r.excluded_by else "error"
    assert store.save_processing("inv", stored) == 2
    return store, records


def test_summary_counts_every_dimension(filled):
    store, records = filled
    summary = summarize(store, "inv", now=NOW, chunk=128)  # several chunks
    assert summary.files == len(records) == 601
    assert summary.bytes == sum(r.size or 0 for r in records)
    by_container = summary.tables["by_container"].set_index("container")
    assert by_container.loc["drawings", "files"] == 400 and by_container.loc["contracts", "files"] == 201
    folders = summary.tables["by_top_folder"].set_index("top_folder")["files"].to_dict()
    assert folders == {"Level 1": 200, "Level 2": 200, "Archive": 200, "(root)": 1}
    types = summary.tables["by_file_type"].set_index("file_type")["files"].to_dict()
    assert types == {".pdf": 300, ".dwg": 300, ".txt": 1}
    ages = summary.tables["by_age"]
    expected = pd.Series([(NOW - r.date_updated).days for r in records if r.date_updated])
    assert list(ages["age"]) == ["< 30 days", "30-365 days", "1-3 years", "> 3 years", "unknown"]
    assert ages.set_index("age")["files"].to_dict() == {
        "< 30 days": int((expected < 30).sum()), "30-365 days": int(((expected >= 30) & (expected < 365)).sum()),
        "1-3 years": int(((expected >= 365) & (expected < 1095)).sum()), "> 3 years": int((expected >= 1095).sum()),
        "unknown": 1}
    largest = summary.tables["largest_files"]
    assert list(largest["size"]) == sorted((r.size for r in records if r.size), reverse=True)[:20]
    flags = summary.tables["flags"].set_index("flag")["files"].to_dict()
    assert flags == {"duplicates": 12, "excluded": 1, "infected": 1, "processing_errors": 1}
    assert "601 files" in summary.markdown()


def test_summary_of_empty_endpoint(store):
    summary = summarize(store, "nothing")
    assert summary.files == 0 and summary.tables["by_container"].empty


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_export_streams_every_file(filled, tmp_path, fmt):
    store, records = filled
    if fmt == "parquet":
        pytest.importorskip("pyarrow")
    out = tmp_path / f"inv.{fmt}"
    assert export(store, "inv", fmt, out, chunk=100) == 601
    if fmt == "csv":
        with open(out, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    elif fmt == "jsonl":
        rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    else:
        rows = pd.read_parquet(out).to_dict("records")
    assert sorted(r["external_id"] for r in rows) == sorted(r.external_id for r in records)
    row = next(r for r in rows if r["external_id"] == "id-8")
    assert json.loads(row["processing_errors"]) == ["boom"] and row["path"] == "Archive/sub/f8.dwg"
    assert not (tmp_path / f"inv.{fmt}.partial").exists()


def test_export_tombstones_only_when_asked(filled, tmp_path):
    store, records = filled
    source = ListSource([r for r in records if r.external_id != "id-3"])
    sync_container(source, store, "contracts")  # id-3 is gone: tombstoned by the full listing
    assert export(store, "inv", "jsonl", tmp_path / "live.jsonl") == 600
    assert export(store, "inv", "jsonl", tmp_path / "all.jsonl", include_deleted=True) == 601
    gone = [json.loads(x) for x in (tmp_path / "all.jsonl").read_text().splitlines() if '"id-3"' in x]
    assert gone[0]["deleted_at"]
    with pytest.raises(ConfigError, match="unknown format 'xml'; formats: csv, parquet, jsonl"):
        export(store, "inv", "xml", tmp_path / "x.xml")


def test_cli_export(tmp_path, capsys, monkeypatch):
    from file_connector_dagster.cli import main as cli_main

    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    (tmp_path / "docs/a").mkdir(parents=True)
    for i in range(5):
        (tmp_path / f"docs/a/{i}.txt").write_text(str(i))
    (tmp_path / "connector.yaml").write_text(
        "store: {type: sqlite, path: inv.db}\nendpoints:\n"
        "  - {name: docs, type: local, endpoint_details: {roots: docs, containers: subfolders}}\n")
    config = str(tmp_path / "connector.yaml")
    assert cli_main(["sync", "--config", config]) == 0
    out = tmp_path / "export/docs.csv"
    assert cli_main(["export", "--config", config, "--endpoint", "docs", "--format", "csv", "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip().endswith(f"{out}: 5 files of endpoint docs (csv)")
    assert len(out.read_text().splitlines()) == 6
    assert cli_main(["export", "--config", config, "--endpoint", "nope", "--out", str(out)]) == 2
    assert "no endpoint named 'nope'" in capsys.readouterr().err
