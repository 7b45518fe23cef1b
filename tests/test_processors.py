"""Built-in processors: filters, path_metadata, content_hash (local and SharePoint content),
dedupe and virustotal (against a VirusTotal v3 fake over HTTP on 127.0.0.1)."""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from file_connector_dagster.config import parse_config
from file_connector_dagster.engine import sync_container
from file_connector_dagster.errors import ConfigError
from file_connector_dagster.processing import process_container, run_chain
from file_connector_dagster.processors.base import ProcessorContext, build_processors
from file_connector_dagster.processors.builtin import Filter, FilterOptions
from file_connector_dagster.processors.content_hash import ContentHash, ContentHashOptions
from file_connector_dagster.processors.dedupe import Dedupe, DedupeOptions
from file_connector_dagster.processors.path_metadata import PathMetadata, PathMetadataOptions
from file_connector_dagster.processors.virustotal import VirusTotal, VirusTotalOptions
from file_connector_dagster.sources.local import LocalDetails, LocalSource
from file_connector_dagster.stores.sqlite import SQLiteStore
from tests.fakes.graph import FakeGraph, content_bytes
from tests.fakes.virustotal import FakeVirusTotal

from .stores.helpers import ENDPOINT, ListSource, all_files, rec

VT_ENV = "FC_TEST_VT_KEY"


def decide(processor, records) -> dict[str, Any]:
    run_chain([processor], records, ProcessorContext(ENDPOINT, "c"))
    return {r.external_id: (r.processing_status, r.metadata["processors"].get(processor.name)) for r in records}


def test_filter_options():
    at = datetime(2024, 6, 1, 12, 30, tzinfo=timezone.utc)  # rec()'s date_updated
    cases = [
        (FilterOptions(extensions=[".PDF", "docx"]), "extension 'txt' not in ['pdf', 'docx']"),
        (FilterOptions(exclude_extensions=["txt"]), "extension 'txt' is excluded"),
        (FilterOptions(mime_types=["image/*"]), "mime type 'text/plain' not in ['image/*']"),
        (FilterOptions(modified_after=at), f"not modified after {at.isoformat()}"),
        (FilterOptions(modified_before=datetime(2024, 1, 1)), "not modified before 2024-01-01T00:00:00+00:00"),
        (FilterOptions(max_depth=0), "deeper than 0 folders"),
        (FilterOptions(min_bytes=101), "smaller than 101 bytes"),
    ]
    for options, reason in cases:
        assert decide(Filter(options), [rec(1)]) == {"f1": ("skipped", {"skipped": reason})}, options
    keep = FilterOptions(extensions=["txt"], mime_types=["text/*"], modified_after=datetime(2024, 1, 1),
                         modified_before=datetime(2025, 1, 1), max_depth=1, max_bytes=100)
    assert decide(Filter(keep), [rec(1)]) == {"f1": ("processed", {})}


def test_path_metadata_iso_19650_and_a_non_matching_name():
    records = [rec(1, title="PRJ1-ABC-ZZ-01-DR-A-0001.pdf"), rec(2, title="notes.txt")]
    assert decide(PathMetadata(PathMetadataOptions()), records) == {
        "f1": ("processed", {"matched": True, "project": "PRJ1", "originator": "ABC", "volume": "ZZ", "level": "01",
                             "type": "DR", "role": "A", "number": "0001"}),
        "f2": ("processed", {"matched": False}),
    }
    folder = PathMetadata(PathMetadataOptions(pattern=r"^(?P<year>\d{4})/", match="path"))
    assert decide(folder, [rec(3, path="2024/x.txt")])["f3"] == ("processed", {"matched": True, "year": "2024"})
    with pytest.raises(ConfigError, match=r"endpoint 'share': processors\[0\] path_metadata: pattern: "
                                          r"the regular expression has no named groups"):
        parse_config({"endpoints": [{"name": "share", "type": "local", "endpoint_details": {"roots": "."},
                                     "processors": [{"type": "path_metadata", "pattern": "^[0-9]+"}]}]})


# -- content_hash ---------------------------------------------------------------------------------------

@pytest.fixture
def share(tmp_path: Path) -> tuple[LocalSource, SQLiteStore, Path]:
    root = tmp_path / "share"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_bytes(b"alpha" * 1000)
    (root / "sub" / "copy-of-a.txt").write_bytes(b"alpha" * 1000)
    (root / "b.bin").write_bytes(bytes(range(256)) * 4096)  # 1 MiB
    (root / "empty").write_bytes(b"")
    store = SQLiteStore(tmp_path / "x.db")
    store.migrate()
    source = LocalSource("share", LocalDetails(roots=[str(root)]))
    sync_container(source, store, "share")
    yield source, store, root
    store.close()


def test_content_hash_streams_local_files_once_per_version(share):
    source, store, root = share
    chain = [ContentHash(ContentHashOptions(max_file_size_mb=0.5, concurrency=3))]
    (root / "empty").unlink()  # gone between listing and hashing
    stats = process_container(store, chain, "share", "share", source=source)
    assert stats.outcomes == {"processed": 2, "skipped": 2, "failed": 0, "error": 0, "pending": 0}
    files = {r.path: r for r in all_files(store, endpoint="share").values()}
    expected = hashlib.sha256(b"alpha" * 1000).hexdigest()
    assert files["a.txt"].metadata["processors"]["content_hash"] == {"sha256": expected, "size": 5000}
    assert files["a.txt"].content_hash == f"sha256:{expected}" and files["a.txt"].processed_key == files["a.txt"].change_key
    assert files["b.bin"].metadata["processors"]["content_hash"] == {"skipped": "larger than max_file_size_mb=0.5"}
    assert "the file is gone" in files["empty"].metadata["processors"]["content_hash"]["skipped"]
    assert process_container(store, chain, "share", "share", source=source).pages == 0  # nothing changed

    (root / "a.txt").write_bytes(b"changed")
    sync_container(source, store, "share")
    stats = process_container(store, chain, "share", "share", source=source)
    assert stats.outcomes["processed"] == 1
    assert all_files(store, endpoint="share")["share/a.txt"].content_hash == f"sha256:{hashlib.sha256(b'changed').hexdigest()}"


def test_a_source_without_content_is_skipped_with_the_reason(tmp_path):
    store = SQLiteStore(tmp_path / "x.db")
    store.migrate()
    source = ListSource({"c": [rec(1)]})
    sync_container(source, store, "c")
    process_container(store, [ContentHash(ContentHashOptions())], ENDPOINT, "c", source=source)
    assert all_files(store)["f1"].metadata["processors"]["content_hash"] == {
        "skipped": "endpoint 'docs': scripted sources cannot serve file content"}
    store.close()


def test_content_hash_of_sharepoint_files_follows_the_download_redirect(tmp_path, monkeypatch):
    from tests.sources.test_sharepoint import SECRET_ENV, make_source

    with FakeGraph() as fake:
        monkeypatch.setenv(SECRET_ENV, fake.client_secret)
        drive = fake.add_drive(fake.add_site("sites/eng", "Engineering"), "Documents", items=60, folders_every=10)
        store = SQLiteStore(tmp_path / "x.db")
        store.migrate()
        source = make_source(fake)
        sync_container(source, store, drive.id)
        gone = next(i for i, s in drive.live_files().items())
        drive.delete(gone)
        stats = process_container(store, [ContentHash(ContentHashOptions(concurrency=4))], "sp", drive.id,
                                  source=source, page_size=20)
        live = drive.live_files()
        files = {r.external_id: r for p in store.iter_files("sp", drive.id, include_deleted=False) for r in p}
        assert stats.outcomes["processed"] == len(live) and stats.outcomes["skipped"] == 1
        for item_id in live:
            state = drive.state(item_id)
            want = hashlib.sha256(content_bytes(item_id, state["content"], state["size"])).hexdigest()
            assert files[item_id].metadata["processors"]["content_hash"]["sha256"] == want
        assert "the file is gone" in files[gone].metadata["processors"]["content_hash"]["skipped"]
        assert fake.count("content") == len(live) + 1 and fake.count("download") == len(live)
        assert fake.count("download_with_token") == 0  # the bearer token never went to the download host
        source.close()
        store.close()


# -- dedupe ---------------------------------------------------------------------------------------------

def test_dedupe_marks_later_copies_as_duplicates_of_the_first(share, tmp_path):
    source, store, root = share
    chain = [ContentHash(ContentHashOptions()), Dedupe(DedupeOptions())]
    process_container(store, chain, "share", "share", source=source)
    files = {r.path: r for r in all_files(store, endpoint="share").values()}
    assert files["a.txt"].processing_status == "processed"
    assert files["a.txt"].metadata["processors"]["dedupe"]["duplicate_of"] is None
    copy = files["sub/copy-of-a.txt"]
    assert (copy.processing_status, copy.excluded_by) == ("skipped", "dedupe")
    assert copy.metadata["processors"]["dedupe"]["duplicate_of"] == {"endpoint": "share", "external_id": "share/a.txt",
                                                                     "path": "a.txt"}
    # another endpoint: a copy there is a duplicate only with scope "all"
    other_root = tmp_path / "other"
    other_root.mkdir()
    (other_root / "third-copy.txt").write_bytes(b"alpha" * 1000)
    other = LocalSource("other", LocalDetails(roots=[str(other_root)]))
    sync_container(other, store, "other")
    process_container(store, chain, "other", "other", source=other)
    assert all_files(store, endpoint="other")["other/third-copy.txt"].processing_status == "processed"
    store.requeue("other")
    process_container(store, [ContentHash(ContentHashOptions()), Dedupe(DedupeOptions(scope="all"))],
                      "other", "other", source=other)
    third = all_files(store, endpoint="other")["other/third-copy.txt"]
    assert third.metadata["processors"]["dedupe"]["duplicate_of"]["external_id"] == "share/a.txt"


def test_dedupe_uses_the_providers_hash_of_the_same_algorithm():
    a, b, c = rec(1, metadata={"hashes": {"quickXorHash": "Q1"}}), rec(2, metadata={"hashes": {"quickXorHash": "Q1"}}), \
        rec(3, metadata={"hashes": {"sha1": "Q1"}})
    a.first_seen_at, b.first_seen_at, c.first_seen_at = (datetime(2024, 1, d, tzinfo=timezone.utc) for d in (2, 1, 3))
    result = decide(Dedupe(DedupeOptions()), [a, b, c])
    assert result["f2"][0] == "processed" and result["f3"][0] == "processed"  # sha1 "Q1" is another algorithm
    assert result["f1"] == ("skipped", {"skipped": "duplicate of f2", "hash": "quickXorHash:Q1",
                                        "duplicate_of": {"endpoint": ENDPOINT, "external_id": "f2", "path": "folder/file2.txt"}})


# -- virustotal ------------------------------------------------------------------------------------------

@pytest.fixture
def vt(monkeypatch) -> FakeVirusTotal:
    fake = FakeVirusTotal()
    monkeypatch.setenv(VT_ENV, fake.api_key)
    with fake:
        yield fake


def vt_options(fake: FakeVirusTotal, **overrides: Any) -> VirusTotalOptions:
    raw = {"api_key": "${" + VT_ENV + "}", "api_url": fake.api_url, "requests_per_minute": 6000, **overrides}
    return VirusTotalOptions.model_validate(raw)


@pytest.fixture
def scanned(tmp_path: Path, vt: FakeVirusTotal):
    """Two containers: clean.txt (known, clean), eicar.com (known, malicious), new.txt (unknown),
    and copies of clean.txt; the store and a function running content_hash + virustotal."""
    root = tmp_path / "share"
    for container in ("one", "two"):
        (root / container).mkdir(parents=True)
        (root / container / "clean.txt").write_bytes(b"clean")
        (root / container / "copy.txt").write_bytes(b"clean")
    (root / "one" / "eicar.com").write_bytes(b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR")
    (root / "one" / "new.txt").write_bytes(b"never seen")
    vt.add(b"clean")
    vt.add(b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR", malicious=60)
    store = SQLiteStore(tmp_path / "x.db")
    store.migrate()
    source = LocalSource("share", LocalDetails(roots=[str(root)], containers="subfolders"))
    for container in ("one", "two"):
        sync_container(source, store, container)

    def run(container: str, **overrides: Any):
        chain = [ContentHash(ContentHashOptions()), VirusTotal(vt_options(vt, **overrides))]
        return process_container(store, chain, "share", container, source=source, page_size=2), chain[1]

    yield store, run
    store.close()


def verdicts(store) -> dict[str, tuple[str, Any]]:
    return {k: (r.processing_status, r.metadata.get("processors", {}).get("virustotal"))
            for k, r in all_files(store, endpoint="share").items()}


def test_virustotal_clean_malicious_unknown_and_one_lookup_per_hash(scanned, vt, caplog):
    store, run = scanned
    caplog.set_level(logging.DEBUG)
    stats, _ = run("one")
    found = verdicts(store)
    assert found["one/clean.txt"][0] == "processed" and found["one/clean.txt"][1]["malicious"] == 0
    assert found["one/clean.txt"][1]["infected"] is False and found["one/clean.txt"][1]["status"] == "known"
    assert found["one/eicar.com"][0] == "skipped" and found["one/eicar.com"][1]["malicious"] == 60
    assert found["one/eicar.com"][1]["skipped"] == "infected: 60 engines flag it malicious, 0 suspicious"
    assert found["one/new.txt"] == ("processed", {"status": "unknown", "hash": hashlib.sha256(b"never seen").hexdigest()})
    assert stats.outcomes["skipped"] == 1 and stats.outcomes["processed"] == 3
    assert all(n == 1 for n in vt.lookups.values()) and len(vt.lookups) == 3  # copy.txt: the cached verdict

    stats, processor = run("two")  # another container, another run: the cache answers
    assert stats.outcomes["processed"] == 2 and processor.requests_made == 0 and len(vt.requests) == 3
    assert all(f.processing_status in ("processed", "skipped") for f in all_files(store, endpoint="share").values())
    assert vt.api_key not in caplog.text
    for record in all_files(store, endpoint="share").values():
        assert vt.api_key not in str(record.metadata) + str(record.processing_errors)


def test_virustotal_quota_running_out_mid_run_then_the_next_run_finishes(scanned, vt):
    store, run = scanned
    vt.quota = 1
    stats, _ = run("one")  # pages of 2: clean.txt + copy.txt (one hash, one lookup), then eicar.com + new.txt
    assert (stats.outcomes["processed"], stats.outcomes["pending"], stats.outcomes["failed"]) == (2, 2, 0)
    pending = [r for k, r in all_files(store, endpoint="share").items() if r.processing_status == "pending"
               and k.startswith("one/")]
    assert len(pending) == 2 and all(r.processing_attempts == 0 for r in pending)
    assert {r.metadata["processors"]["virustotal"]["pending"] for r in pending} == {
        "VirusTotal quota exceeded or unreachable; looked up on the next run"}
    vt.quota = None
    stats, _ = run("one")
    assert stats.outcomes["pending"] == 0 and sum(stats.outcomes.values()) == 2
    assert max(vt.lookups.values()) == 1


def test_virustotal_paces_requests(scanned, vt):
    store, run = scanned
    clock = [100.0]
    waits: list[float] = []
    chain = [ContentHash(ContentHashOptions()), VirusTotal(vt_options(vt, requests_per_minute=4))]
    chain[1].clock = lambda: clock[0]
    chain[1].sleep = lambda s: (waits.append(s), clock.__setitem__(0, clock[0] + s))
    process_container(store, chain, "share", "one", source=None)  # no source: content_hash leaves files pending
    assert waits == []
    store.requeue("share")
    sources = LocalSource("share", LocalDetails(roots=[str(Path(store.path).parent / "share")], containers="subfolders"))
    process_container(store, chain, "share", "one", source=sources)
    assert waits == [15.0, 15.0] and chain[1].requests_made == 3  # 4 a minute: 15 s apart


def test_virustotal_wrong_key_is_one_clear_error_without_the_key(scanned, vt, monkeypatch):
    store, run = scanned
    monkeypatch.setenv(VT_ENV, "wrong-key-value-123")
    with pytest.raises(ConfigError) as raised:
        run("one")
    assert str(raised.value) == ("processor virustotal: VirusTotal refused the API key "
                                 "(HTTP 401 WrongCredentialsError: Wrong API key); check api_key")
    assert "wrong-key-value-123" not in str(raised.value)
    assert {r.processing_status for r in all_files(store, endpoint="share").values()} == {"pending"}
    assert all(r.processing_attempts == 0 for r in all_files(store, endpoint="share").values())


def test_virustotal_needs_a_usable_hash_and_an_env_reference(vt):
    quick = rec(1, metadata={"hashes": {"quickXorHash": "abc"}})
    assert decide(VirusTotal(vt_options(vt)), [quick])["f1"] == (
        "skipped", {"skipped": "no usable hash (sha256, sha1 or md5): put content_hash before virustotal"})
    big = rec(2, size=700 * 1024 * 1024, metadata={"hashes": {"sha1": "ab"}})
    assert decide(VirusTotal(vt_options(vt)), [big])["f2"][1] == {"skipped": "larger than max_file_size_mb=650"}
    with pytest.raises(ConfigError, match=r"processors\[0\] virustotal: api_key: secrets must be environment references"):
        parse_config({"endpoints": [{"name": "share", "type": "local", "endpoint_details": {"roots": "."},
                                     "processors": [{"type": "virustotal", "api_key": "inline-key"}]}]})
    assert [p.type_name for p in build_processors(parse_config({"endpoints": [
        {"name": "s", "type": "local", "endpoint_details": {"roots": "."},
         "processors": [{"type": "content_hash"}, {"type": "virustotal", "api_key": {"env": VT_ENV}}]}]}
    ).endpoints[0].processors)] == ["content_hash", "virustotal"]


def test_cli_sync_runs_the_chain_and_never_prints_the_key(tmp_path, vt, capsys, monkeypatch):
    """content_hash + dedupe + virustotal through Dagster (`file-connector sync`): counts in the summary,
    the key in no output, the run's materialization metadata or the store."""
    from file_connector_dagster.cli import main as cli_main

    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    (tmp_path / "share").mkdir()
    (tmp_path / "share" / "a.txt").write_bytes(b"clean")
    (tmp_path / "share" / "b.txt").write_bytes(b"clean")
    (tmp_path / "share" / "bad.exe").write_bytes(b"malware")
    vt.add(b"clean")
    vt.add(b"malware", malicious=3)
    (tmp_path / "connector.yaml").write_text(f"""
store: {{type: sqlite, path: inv.db}}
endpoints:
  - name: share
    type: local
    endpoint_details: {{roots: share}}
    processors:
      - {{type: content_hash}}
      - {{type: dedupe}}
      - {{type: virustotal, api_key: "${{{VT_ENV}}}", api_url: "{vt.api_url}", requests_per_minute: 6000}}
""")
    assert cli_main(["sync", "--config", str(tmp_path / "connector.yaml"), "--verbose"]) == 0
    captured = capsys.readouterr()
    lines = [line.split() for line in captured.out.strip().splitlines() if line.startswith(("endpoint", "share "))]
    header = lines[0]
    row = dict(zip(header, lines[1]))
    assert (row["listed"], row["processed"], row["skipped"], row["failed"], row["pending"]) == ("3", "1", "2", "0", "0")
    assert vt.api_key not in captured.out + captured.err
    store = SQLiteStore(tmp_path / "inv.db")
    files = all_files(store, endpoint="share")
    assert files["share/b.txt"].excluded_by == "dedupe" and files["share/bad.exe"].excluded_by == "virustotal"
    assert vt.api_key not in str([(f.metadata, f.processing_errors) for f in files.values()])
    store.close()


def test_virustotal_unreachable_leaves_files_pending(scanned, vt):
    store, run = scanned
    port = vt.server.server_address[1]
    vt.stop()
    stats, _ = run("one", api_url=f"http://127.0.0.1:{port}/api/v3", timeout_s=2)
    assert stats.outcomes["pending"] == 4 and stats.outcomes["failed"] == 0
    assert all(r.processing_attempts == 0 for k, r in all_files(store, endpoint="share").items() if k.startswith("one/"))


def test_cli_sync_with_a_refused_key_fails_in_one_line_without_the_key(tmp_path, vt, capsys, monkeypatch):
    from file_connector_dagster.cli import main as cli_main

    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.setenv(VT_ENV, "refused-key-0987654321")
    (tmp_path / "share").mkdir()
    (tmp_path / "share" / "a.txt").write_bytes(b"clean")
    (tmp_path / "connector.yaml").write_text(f"""
store: {{type: sqlite, path: inv.db}}
endpoints:
  - name: share
    type: local
    endpoint_details: {{roots: share, hash: true}}
    processors: [{{type: virustotal, api_key: "${{{VT_ENV}}}", api_url: "{vt.api_url}", requests_per_minute: 6000}}]
""")
    assert cli_main(["sync", "--config", str(tmp_path / "connector.yaml")]) == 1
    captured = capsys.readouterr()
    assert ("failed: share/share: processor virustotal: VirusTotal refused the API key (HTTP 401 "
            "WrongCredentialsError: Wrong API key); check api_key") in captured.out
    assert "refused-key-0987654321" not in captured.out + captured.err
    store = SQLiteStore(tmp_path / "inv.db")
    assert [f.processing_status for f in all_files(store, endpoint="share").values()] == ["pending"]
    store.close()
