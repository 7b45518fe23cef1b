"""Reading an endpoint's inventory out of any store, in chunks: a summary report (pandas) and exports
(CSV, Parquet, JSON lines). Plain Python, no Dagster; memory is bounded by the chunk size (plus one row
per distinct container, top-level folder and file type), never by the number of files."""

from __future__ import annotations

import csv
import heapq
import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from .errors import ConfigError
from .records import FileRecord
from .stores.base import FILE_COLUMNS, Store

if TYPE_CHECKING:  # pandas is imported by summarize(): a sync never loads it (about 0.3 s and 60 MB)
    import pandas as pd

CHUNK = 10_000
AGE_LABELS = ["< 30 days", "30-365 days", "1-3 years", "> 3 years"]  # by date_updated
AGE_BINS = [float("-inf"), 30, 365, 3 * 365, float("inf")]
EXPORT_FORMATS = ("csv", "parquet", "jsonl")
INT_COLUMNS = frozenset({"size", "processing_attempts"})


def _chunks(store: Store, endpoint: str, include_deleted: bool, chunk: int) -> Iterator[list[FileRecord]]:
    # container by container: each container's pages are an index range (endpoint, container, updated_at, id),
    # where a whole-endpoint ordering would sort the endpoint's rows again for every page
    for container in store.containers(endpoint, include_deleted=include_deleted):
        yield from store.iter_files(endpoint, container, include_deleted=include_deleted, page_size=chunk)


def _row(record: FileRecord) -> dict[str, Any]:
    row = {column: getattr(record, column, None) for column in FILE_COLUMNS}
    row["metadata"] = json.dumps(record.metadata, sort_keys=True, default=str)
    row["processing_errors"] = json.dumps(record.processing_errors)
    for column, value in row.items():
        if isinstance(value, datetime):
            row[column] = value.isoformat()
        elif value is not None and column not in INT_COLUMNS and not isinstance(value, str):
            row[column] = str(value)
    return row


def export(store: Store, endpoint: str, fmt: str, out: str | os.PathLike, include_deleted: bool = False,
           chunk: int = CHUNK) -> int:
    """Stream the endpoint's files to `out` chunk by chunk.

    Args:
        fmt: csv | parquet (needs pyarrow) | jsonl.
        include_deleted: tombstones too (with deleted_at set).

    Returns:
        How many files were written.
    """
    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"export: unknown format {fmt!r}; formats: {', '.join(EXPORT_FORMATS)}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    tmp = out.with_name(out.name + ".partial")  # a failed export leaves no half file under the real name
    if fmt == "parquet":
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ModuleNotFoundError:
            raise ConfigError("export: --format parquet needs pyarrow (pip install pyarrow)") from None
        schema = pa.schema([(c, pa.int64() if c in INT_COLUMNS else pa.string()) for c in FILE_COLUMNS])
        with pq.ParquetWriter(tmp, schema) as writer:
            for records in _chunks(store, endpoint, include_deleted, chunk):
                rows = [_row(r) for r in records]
                writer.write_table(pa.Table.from_pylist(rows, schema=schema))
                written += len(rows)
    else:
        with open(tmp, "w", encoding="utf-8", newline="") as handle:
            writer_csv = csv.DictWriter(handle, fieldnames=FILE_COLUMNS) if fmt == "csv" else None
            if writer_csv:
                writer_csv.writeheader()
            for records in _chunks(store, endpoint, include_deleted, chunk):
                for record in records:
                    row = _row(record)
                    if writer_csv:
                        writer_csv.writerow(row)
                    else:
                        handle.write(json.dumps(row, ensure_ascii=False) + "\n")
                written += len(records)
    tmp.replace(out)
    return written


def _processor_meta(record: FileRecord, name: str) -> dict[str, Any]:
    value = (record.metadata or {}).get("processors", {})
    value = value.get(name) if isinstance(value, dict) else None
    return value if isinstance(value, dict) else {}


def _file_type(record: FileRecord) -> str:
    suffix = Path(record.title or "").suffix.lower()
    return suffix or (record.mime_type or "(none)")


@dataclass
class InventorySummary:
    """What an endpoint's inventory holds (live files only)."""

    endpoint: str
    files: int = 0
    bytes: int = 0
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)  # name -> table, for the UI and CSV

    def markdown(self) -> str:
        parts = [f"**{self.endpoint}**: {self.files:,} files, {self.bytes / 1e9:,.2f} GB"]
        for name, table in self.tables.items():
            parts.append(f"\n### {name.replace('_', ' ')}\n")
            parts.append(table.head(20).to_markdown(index=False) if _has_tabulate() else table.head(20).to_string(index=False))
        return "\n".join(parts)

    def write(self, folder: str | os.PathLike) -> list[Path]:
        """Each table as CSV (and Parquet when pyarrow is installed) under folder/<endpoint>/."""
        target = Path(folder) / self.endpoint
        target.mkdir(parents=True, exist_ok=True)
        written = []
        try:
            import pyarrow  # noqa: F401
            parquet = True
        except ModuleNotFoundError:
            parquet = False
        for name, table in self.tables.items():
            table.to_csv(target / f"{name}.csv", index=False)
            written.append(target / f"{name}.csv")
            if parquet:
                table.to_parquet(target / f"{name}.parquet", index=False)
                written.append(target / f"{name}.parquet")
        return written


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
        return True
    except ModuleNotFoundError:
        return False


def summarize(store: Store, endpoint: str, now: datetime | None = None, largest: int = 20,
              chunk: int = CHUNK) -> InventorySummary:
    """Files and bytes per container, top-level folder, file type and age bucket; the largest files;
    duplicates, excluded, infected and errored files. Reads the store chunk by chunk."""
    import pandas as pd

    now = now or datetime.now(timezone.utc)
    sums: dict[str, pd.DataFrame | None] = {"container": None, "top_folder": None, "file_type": None, "age": None}
    top: list[tuple[int, str, str, str]] = []  # min-heap of (size, external_id, container, path)
    flags = {"duplicates": 0, "excluded": 0, "infected": 0, "processing_errors": 0}
    flagged: list[dict[str, Any]] = []  # at most `largest` examples per flag
    summary = InventorySummary(endpoint)
    for records in _chunks(store, endpoint, False, chunk):
        frame = pd.DataFrame({
            "container": [r.container for r in records],
            "top_folder": [r.path.split("/", 1)[0] if "/" in r.path else "(root)" for r in records],
            "file_type": [_file_type(r) for r in records],
            "size": pd.array([r.size or 0 for r in records], dtype="int64"),
            "updated": pd.to_datetime([r.date_updated for r in records], utc=True),
        })
        days = (now - frame["updated"]).dt.days
        frame["age"] = pd.cut(days, bins=AGE_BINS, right=False, labels=AGE_LABELS).astype(object).fillna("unknown")
        summary.files += len(frame)
        summary.bytes += int(frame["size"].sum())
        for key in sums:
            part = frame.groupby(key)["size"].agg(files="count", bytes="sum")
            sums[key] = part if sums[key] is None else sums[key].add(part, fill_value=0)
        for r in records:
            if r.size is not None:
                item = (r.size, r.external_id, r.container, r.path)
                heapq.heappush(top, item) if len(top) < largest else heapq.heappushpop(top, item)
            reasons = []
            if _processor_meta(r, "dedupe").get("duplicate_of"):
                reasons.append("duplicates")
            if r.excluded_by:
                reasons.append("excluded")
            if r.excluded_by == "virustotal" or (_processor_meta(r, "virustotal").get("malicious") or 0) > 0:
                reasons.append("infected")
            if r.processing_errors:
                reasons.append("processing_errors")
            for reason in reasons:
                flags[reason] += 1
                if sum(1 for f in flagged if f["flag"] == reason) < largest:
                    flagged.append({"flag": reason, "container": r.container, "path": r.path,
                                    "excluded_by": r.excluded_by, "errors": "; ".join(r.processing_errors)[:200]})
    names = {"container": "by_container", "top_folder": "by_top_folder", "file_type": "by_file_type", "age": "by_age"}
    for key, table in sums.items():
        if table is None:
            table = pd.DataFrame({"files": [], "bytes": []})
        table = table.astype("int64").sort_values("bytes", ascending=False).reset_index().rename(columns={"index": key})
        if key == "age":
            order = {label: i for i, label in enumerate(AGE_LABELS)}
            table = table.sort_values(key, key=lambda s: s.map(lambda v: order.get(v, 99))).reset_index(drop=True)
        summary.tables[names[key]] = table
    summary.tables["largest_files"] = pd.DataFrame(
        sorted(top, reverse=True), columns=["size", "external_id", "container", "path"])
    summary.tables["flags"] = pd.DataFrame([{"flag": k, "files": v} for k, v in flags.items()])
    summary.tables["flagged_examples"] = pd.DataFrame(flagged, columns=["flag", "container", "path", "excluded_by", "errors"])
    return summary
