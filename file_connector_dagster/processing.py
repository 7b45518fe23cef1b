"""Processing: an endpoint's processors over the files that are due, with exact per-file state.

The rules live here, once for every store (stores only read what is due and write results back):
- A store writes every new or changed version of a file (and every file a folder move re-paths) as
  `pending`, unless it was decided while its listing page committed (`decide_while_listing`: the
  chain's leading filters skipped it, or the whole chain needs no I/O). Unchanged files are never
  written, so they are never processed again.
- The files step reads the pending live files of a container in pages (`Store.iter_due`: one indexed
  query a page; nothing to do costs one query), runs the chain, and saves each page's results in one
  transaction, only where the row is still the version that was processed and still pending (a file
  changed meanwhile stays pending for its new version; a result another files step of the same
  container saved first is kept). A step killed half-way leaves exactly the unsaved files pending.
- The files step takes no lease (processing can take hours and must not hold up listings): two steps
  of one container at once may both run the processors on the same due files, but the first decided
  result of a version stands; the other's is dropped (counted as changed_meanwhile).
- Per file, the chain ends in: processed (every processor processed it), skipped (a processor
  skipped it: excluded_by names it), failed (an error: pending again with one more attempt, `error`
  once max_attempts is reached) or pending (a processor could not decide now: no attempt counted).
- processed_key records the change_key decided on; `reprocess` re-queues files (Store.requeue).

Plain Python; the Dagster files asset and its IO manager call open_processing / commit_processing.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

from .engine import error_text
from .errors import ConfigError
from .processors.base import ProcessorContext, ProcessResult
from .records import ChangePage, FileRecord, utcnow

if TYPE_CHECKING:
    from .processors.base import Processor
    from .sources.base import Source
    from .stores.base import Store

log = logging.getLogger(__name__)

# What a files step reports: processed / skipped, failed (retried next run), error (attempts used up),
# pending (no decision possible now).
OUTCOMES = ("processed", "skipped", "failed", "error", "pending")
_HASH_PREFERENCE = ("sha256", "sha1", "md5", "quickXorHash")


def best_hash(record: FileRecord) -> str | None:
    """The file's content hash as "algorithm:value": content_hash's sha256 when computed, else the
    provider's own (sha256, sha1, md5, quickXorHash, in that order)."""
    computed = (record.metadata.get("processors") or {}).get("content_hash") or {}
    if computed.get("sha256"):
        return f"sha256:{computed['sha256']}"
    hashes = record.metadata.get("hashes") or {}
    for algorithm in _HASH_PREFERENCE:
        if hashes.get(algorithm):
            return f"{algorithm}:{hashes[algorithm]}"
    return None


def _results(processor: "Processor", batch: list[FileRecord], context: ProcessorContext) -> dict[str, ProcessResult]:
    """Run one processor over a batch. An exception fails the file it concerns: the batch is tried
    again file by file, so one bad file does not fail the others."""
    try:
        answer = processor.process(batch, context)
    except ConfigError:
        raise  # the processor's configuration is wrong (a refused key): one clear error, not per-file failures
    except Exception as exc:
        if len(batch) == 1:
            return {batch[0].external_id: ProcessResult.failed(error_text(exc))}
        found: dict[str, ProcessResult] = {}
        for record in batch:
            found.update(_results(processor, [record], context))
        return found
    if isinstance(answer, dict):
        return answer
    answer = list(answer)
    if len(answer) != len(batch):
        problem = f"returned {len(answer)} results for {len(batch)} files"
        return {r.external_id: ProcessResult.failed(problem) for r in batch}
    return {r.external_id: result for r, result in zip(batch, answer)}


def run_chain(processors: Sequence["Processor"], batch: list[FileRecord], context: ProcessorContext) -> None:
    """Decide on every file of the batch: sets its processing columns and metadata.processors."""
    now = utcnow()
    status: dict[str, str] = {}
    for record in batch:
        record.excluded_by = None
        record.processing_errors = []
        record.metadata = {**record.metadata, "processors": {}}
        record.content_hash = best_hash(record)
    active = list(batch)
    for processor in processors:
        if not active:
            break
        results = _results(processor, active, context)
        still_active = []
        for record in active:
            result = results.get(record.external_id) or ProcessResult.failed("the processor returned no result")
            outcome = result.status
            kept = dict(result.metadata)
            if outcome == "skipped":
                kept["skipped"] = result.skip
                record.excluded_by = processor.name
            elif outcome == "pending":
                kept["pending"] = result.pending
            elif outcome == "failed":
                record.processing_errors.append(f"{processor.name}: {result.error or 'failed'}")
                record.processing_attempts += 1
                outcome = "error" if record.processing_attempts >= processor.options.max_attempts else "failed"
            if kept or outcome == "processed":
                record.metadata["processors"][processor.name] = kept
            if outcome == "processed":
                still_active.append(record)
            else:
                status[record.external_id] = outcome
            record.content_hash = best_hash(record)
        active = still_active
    for record in batch:  # content_hash: already set after the last processor that saw the record
        outcome = status.get(record.external_id, "processed")
        record.processed_at = now
        # failed (attempts left) and pending files stay due; the others are decided for this change key
        record.processing_status = "pending" if outcome in ("failed", "pending") else outcome
        record.processed_key = record.change_key if record.processing_status != "pending" else None
        if outcome in ("processed", "skipped"):
            record.processing_attempts = 0


def outcome_of(record: FileRecord) -> str:
    """The OUTCOMES entry a decided record counts under."""
    if record.processing_status == "pending":
        return "failed" if record.processing_errors else "pending"
    return record.processing_status or "pending"


def decide_while_listing(pages: Iterator[ChangePage], processors: Sequence["Processor"], endpoint: str,
                         container: str) -> Iterator[ChangePage]:
    """Run the chain's leading processors that need no I/O (filters) on each page's upserts before the
    store commits it (in the prefetch thread, so while the previous page commits). The store writes the
    decisions with the rows it writes anyway; unchanged rows are neither written nor decided again.

    When the whole chain needs no I/O (or there is none), every file is decided here and the files step
    has nothing left to do. Otherwise only the files those filters skip are decided; the rest stay
    pending and the files step runs the whole chain on them.
    """
    prefix: list["Processor"] = []
    for processor in processors:
        if processor.needs_io:
            break
        prefix.append(processor)
    whole = len(prefix) == len(processors)
    context = ProcessorContext(endpoint, container)
    for page in pages:
        if page.upserts and (prefix or whole):
            run_chain(prefix, page.upserts, context)
            if not whole:
                for record in page.upserts:
                    if record.processing_status != "skipped":
                        _undecided(record)
        yield page


def _undecided(record: FileRecord) -> None:
    record.processing_status, record.processed_key, record.processed_at = None, None, None
    record.excluded_by, record.processing_errors, record.processing_attempts = None, [], 0
    record.metadata.pop("processors", None)


@dataclass
class ProcessingStream:
    """A lazy stream of one container's processed pages; nothing is read until it is consumed."""

    endpoint: str
    container: str
    pages: Iterator[list[FileRecord]]


@dataclass
class ProcessingStats:
    """What one files step did."""

    endpoint: str
    container: str
    pages: int = 0
    outcomes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    # results not saved: the file changed during processing (pending again), or another files step of
    # the container decided it first
    changed_meanwhile: int = 0
    duration_s: float = 0.0
    error_samples: list[str] = field(default_factory=list)

    def add_page(self, page: list[FileRecord], written: int) -> None:
        self.pages += 1
        for record in page:
            self.outcomes[outcome_of(record)] += 1
            if record.processing_errors and len(self.error_samples) < 20:
                self.error_samples.append(f"{record.path}: {record.processing_errors[-1]}")
        self.changed_meanwhile += len(page) - written

    def counts(self) -> dict[str, int]:
        return {**self.outcomes, "changed_meanwhile": self.changed_meanwhile, "pages": self.pages}


def open_processing(store: "Store", processors: Sequence["Processor"], endpoint: str, container: str,
                    source: "Source | None" = None, log: logging.Logger | None = None,
                    page_size: int = 500, on_close: Callable[[], None] | None = None) -> ProcessingStream:
    """The container's due files, page by page, each page run through the chain.

    Args:
        store: read from (iter_due) and handed to processors for reads.
        source: for processors that read content.
        on_close: called once the stream ends or is dropped (to close what the caller opened).
    """
    context = ProcessorContext(endpoint, container, log or logging.getLogger("file_connector.processors"),
                               store, source)

    def pages() -> Iterator[list[FileRecord]]:
        try:
            for batch in store.iter_due(endpoint, container, page_size):
                run_chain(processors, batch, context)
                yield batch
        finally:
            for processor in processors:
                processor.close()
            if on_close:
                on_close()

    return ProcessingStream(endpoint, container, pages())


def commit_processing(store: "Store", stream: ProcessingStream,
                      on_page: Callable[[list[FileRecord], ProcessingStats], None] | None = None) -> ProcessingStats:
    """Save every processed page, each in its own transaction; a failure keeps what was saved."""
    stats = ProcessingStats(stream.endpoint, stream.container)
    started = time.monotonic()
    try:
        for page in stream.pages:
            stats.add_page(page, store.save_processing(stream.endpoint, page))
            if on_page:
                on_page(page, stats)
    finally:
        stats.duration_s = round(time.monotonic() - started, 3)
        close = getattr(stream.pages, "close", None)
        if close:
            close()
    return stats


def process_container(store: "Store", processors: Sequence["Processor"], endpoint: str, container: str,
                      source: "Source | None" = None, page_size: int = 500) -> ProcessingStats:
    """open_processing + commit_processing, for the CLI, tests and scripts."""
    return commit_processing(store, open_processing(store, processors, endpoint, container, source,
                                                    page_size=page_size))
