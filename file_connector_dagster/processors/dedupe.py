"""`dedupe`: files whose content hash matches an earlier live file are marked as duplicates of it.

The hash is record.content_hash ("sha256:..." from content_hash, or the provider's own sha1 / md5 /
quickXorHash): two files match only under the same algorithm. "Earlier" is first seen earlier (then
endpoint, then external id). The earliest is canonical; the others are skipped ("out of the canonical
view") with metadata duplicate_of = the canonical file's endpoint and external id. Put it after
content_hash in the chain when the source has no hashes of its own.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Literal

from ..records import FileRecord
from .base import Processor, ProcessorContext, ProcessorOptions, ProcessResult, register_processor

_LONG_AGO = datetime.max.replace(tzinfo=timezone.utc)


def _order(record: FileRecord) -> tuple:
    first = record.first_seen_at or _LONG_AGO
    return (first if first.tzinfo else first.replace(tzinfo=timezone.utc), record.endpoint, record.external_id)


class DedupeOptions(ProcessorOptions):
    scope: Literal["endpoint", "all"] = "endpoint"  # compare with this endpoint's files, or every endpoint's


class Dedupe(Processor):
    """Marks files with the same content as an earlier live file as its duplicates."""

    type_name = "dedupe"
    Options = DedupeOptions

    def process(self, batch: list[FileRecord], context: ProcessorContext) -> list[ProcessResult]:
        hashes = sorted({r.content_hash for r in batch if r.content_hash})
        canonical: dict[str, FileRecord] = {}
        if hashes and context.store is not None:
            scope = None if self.options.scope == "all" else context.endpoint
            for other in context.store.files_by_hash(hashes, scope):
                if other.content_hash and (other.content_hash not in canonical
                                           or _order(other) < _order(canonical[other.content_hash])):
                    canonical[other.content_hash] = other
        for record in batch:  # files of this batch count too (their rows carry no hash yet)
            current = canonical.get(record.content_hash or "")
            if record.content_hash and (current is None or _order(record) < _order(current)):
                canonical[record.content_hash] = record
        results = []
        for record in batch:
            if not record.content_hash:
                results.append(ProcessResult.processed({"duplicate_of": None, "no_hash": True}))
                continue
            first = canonical[record.content_hash]
            if (first.endpoint, first.external_id) == (record.endpoint, record.external_id):
                results.append(ProcessResult.processed({"duplicate_of": None, "hash": record.content_hash}))
            else:
                results.append(ProcessResult.skipped(
                    f"duplicate of {first.external_id}" + (f" in endpoint {first.endpoint}" if first.endpoint != record.endpoint else ""),
                    {"duplicate_of": {"endpoint": first.endpoint, "external_id": first.external_id, "path": first.path},
                     "hash": record.content_hash}))
        return results


register_processor(Dedupe.type_name, Dedupe)
