"""`content_hash`: sha256 of each new or changed file's content, streamed from its source.

Memory: one chunk per worker. A sha256 the source already reports (local `hash: true`) is used as it
is; files over max_file_size_mb, and files whose source cannot serve content, are skipped with the
reason; a read that fails is retried on the next run.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor

from pydantic import Field

from ..engine import error_text
from ..errors import ContentUnavailable, FileConnectorError
from ..records import FileRecord
from .base import Processor, ProcessorContext, ProcessorOptions, ProcessResult, register_processor


class ContentHashOptions(ProcessorOptions):
    max_file_size_mb: float = Field(default=1024, gt=0)  # larger files are skipped, not read
    concurrency: int = Field(default=4, ge=1, le=64)  # files read at once (hashlib releases the GIL)


class ContentHash(Processor):
    """Computes the sha256 of each file's content (metadata.processors.content_hash.sha256)."""

    type_name = "content_hash"
    Options = ContentHashOptions

    def process(self, batch: list[FileRecord], context: ProcessorContext) -> list[ProcessResult]:
        with ThreadPoolExecutor(max_workers=min(self.options.concurrency, max(1, len(batch)))) as pool:
            return list(pool.map(lambda record: self._hash(record, context), batch))

    def _hash(self, record: FileRecord, context: ProcessorContext) -> ProcessResult:
        limit = int(self.options.max_file_size_mb * 1024 * 1024)
        if record.size is not None and record.size > limit:
            return ProcessResult.skipped(f"larger than max_file_size_mb={self.options.max_file_size_mb:g}")
        known = (record.metadata.get("hashes") or {}).get("sha256")
        if known:
            return ProcessResult.processed({"sha256": known, "size": record.size, "from": "source"})
        if context.source is None:
            return ProcessResult.later("no source to read content from")
        digest, size = hashlib.sha256(), 0
        try:
            chunks = context.source.open_content(record)
            try:
                for chunk in chunks:
                    size += len(chunk)
                    if size > limit:
                        return ProcessResult.skipped(f"larger than max_file_size_mb={self.options.max_file_size_mb:g}")
                    digest.update(chunk)
            finally:
                close = getattr(chunks, "close", None)
                if close:
                    close()
        except ContentUnavailable as exc:
            return ProcessResult.skipped(str(exc))
        except FileConnectorError as exc:
            return ProcessResult.failed(error_text(exc))
        except OSError as exc:
            return ProcessResult.failed(f"cannot read: {exc.strerror or exc}")
        return ProcessResult.processed({"sha256": digest.hexdigest(), "size": size})


register_processor(ContentHash.type_name, ContentHash)
