"""IO managers: they commit change streams and processing results to the configured store, page by
page, and report the counts they saw as materialization metadata.

A run may cover several containers (partitions) of an endpoint (single-run backfills, schedule ticks):
each container is still its own sync (lease, transactions a page, sync log) and gets its own
materialization with its own counts; one failing container does not stop the others.
"""


from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from dagster import AssetMaterialization, ConfigurableIOManager, Failure, InputContext, MetadataValue, OutputContext

from ..engine import ChangeStream, commit_changes, error_text, redacted
from ..errors import FileConnectorError
from ..processing import ProcessingStream, commit_processing, open_processing
from ..processors.base import Processor
from ..records import FileRecord
from ..stores import Store
from .resources import FileConnectorResource


@dataclass
class ChangedFiles:
    """One container's files as a downstream step reads them: `process()` streams the files due for
    processing through a chain; `pages()` reads the live files page by page."""

    connector: FileConnectorResource
    endpoint: str
    container: str

    def process(self, processors: Sequence[Processor], log: Any = None) -> ProcessingStream:
        """Open the store (and the source, for content) and stream the due files through the chain."""
        store = self.connector.store()
        try:
            source = self.connector.source(self.endpoint)
        except BaseException:
            store.close()
            raise

        def close() -> None:
            source.close()
            store.close()

        return open_processing(store, processors, self.endpoint, self.container, source, log, on_close=close)

    def pages(self, page_size: int = 1000) -> Iterator[list[FileRecord]]:
        store = self.connector.store()
        try:
            yield from store.iter_files(self.endpoint, self.container, include_deleted=False, page_size=page_size)
        finally:
            store.close()


@dataclass
class ProcessingStreams:
    """The files asset's output: each container's processing stream, opened only when the IO manager
    gets to it (a run over many containers holds one store and source open at a time)."""

    streams: Iterator[ProcessingStream]


def _store_metadata(store: Store) -> dict[str, MetadataValue]:
    return {"store": MetadataValue.text(store.label)}


def _partition_keys(context: InputContext | OutputContext) -> list[str]:
    return list(context.asset_partition_keys) if context.has_asset_partitions else []


def _single_failure(exc: FileConnectorError, where: str = "") -> Exception:
    return redacted(exc) if exc.retryable else Failure(description=where + error_text(exc), allow_retries=False)


def _report(context: OutputContext, by_container: dict[str, dict], failures: list[tuple[str, FileConnectorError]]) -> None:
    """Each container's counts as its own partition's materialization; failures as one step failure."""
    if not failures and len(by_container) == 1 and len(_partition_keys(context)) <= 1:
        context.add_output_metadata(next(iter(by_container.values())))
        return
    if not failures:
        for container, metadata in by_container.items():
            context.step_context.add_asset_metadata(metadata, asset_key=context.asset_key, partition_key=container)
        return
    # The step fails, so Dagster records no materialization for the containers that did sync: log them here.
    for container, metadata in by_container.items():
        context.log_event(AssetMaterialization(asset_key=context.asset_key, partition=container, metadata=metadata))
    summary = "; ".join(f"{container}: {error_text(exc)}" for container, exc in failures)
    raise Failure(description=f"{len(failures)} of {len(by_container) + len(failures)} containers failed: {summary}",
                  allow_retries=any(exc.retryable for _, exc in failures))


class ListingsIOManager(ConfigurableIOManager):
    """Commits each container's change stream (each page with its cursor, one transaction a page)."""

    connector: FileConnectorResource

    def handle_output(self, context: OutputContext, obj: list[ChangeStream]) -> None:
        store = self.connector.store()
        single = len(obj) == 1
        by_container: dict[str, dict] = {}
        failures: list[tuple[str, FileConnectorError]] = []

        def progress(page, stats) -> None:
            if stats.pages % 50 == 0:
                context.log.info(f"{stats.endpoint}/{stats.container}: {stats.pages} pages, {stats.listed} files")

        try:
            for stream in obj:
                try:
                    stats = commit_changes(store, stream, on_page=progress)
                except FileConnectorError as exc:
                    if single:
                        raise _single_failure(exc) from None
                    context.log.error(f"{stream.endpoint}/{stream.container}: {error_text(exc)}")
                    failures.append((stream.container, exc))
                    continue
                metadata: dict = {k: MetadataValue.int(v) for k, v in stats.counts().items()}
                metadata["duration_s"] = MetadataValue.float(stats.duration_s)
                metadata["full_listing"] = MetadataValue.bool(stats.full_listing)
                for outcome, n in stats.decided.items():  # the endpoint's filters, applied as pages committed
                    metadata[f"{outcome}_while_listing"] = MetadataValue.int(n)
                metadata.update(_store_metadata(store))
                if stats.error_samples:
                    metadata["error_samples"] = MetadataValue.md("\n".join(f"- `{e}`" for e in stats.error_samples))
                if stats.errors:
                    context.log.warning(f"{stream.endpoint}/{stream.container}: {stats.errors} files could not be listed")
                by_container[stream.container] = metadata
            _report(context, by_container, failures)
        finally:
            for source in {id(stream.source): stream.source for stream in obj}.values():  # one per endpoint
                source.close()
            store.close()

    def load_input(self, context: InputContext) -> list[ChangedFiles]:  # upstream key: <endpoint>/listing
        endpoint = context.upstream_output.asset_key.path[0]
        return [ChangedFiles(self.connector, endpoint, key) for key in _partition_keys(context)]


class FilesIOManager(ConfigurableIOManager):
    """Saves each processed page's per-file results (one transaction a page) and reports the outcomes."""

    connector: FileConnectorResource

    def handle_output(self, context: OutputContext, obj: ProcessingStreams) -> None:
        store = self.connector.store()
        single = len(_partition_keys(context)) <= 1
        by_container: dict[str, dict] = {}
        failures: list[tuple[str, FileConnectorError]] = []
        try:
            streams = obj.streams
            while True:
                try:
                    stream = next(streams)  # opens the container's store and source
                except StopIteration:
                    break
                except FileConnectorError as exc:
                    raise _single_failure(exc) from None  # the endpoint's config: the same for every container
                try:
                    stats = commit_processing(store, stream)
                except FileConnectorError as exc:
                    if single:
                        raise _single_failure(exc, f"{stream.endpoint}/{stream.container}: ") from None
                    context.log.error(f"{stream.endpoint}/{stream.container}: {error_text(exc)}")
                    failures.append((stream.container, exc))
                    continue
                metadata: dict = {k: MetadataValue.int(v) for k, v in stats.counts().items()}
                metadata["duration_s"] = MetadataValue.float(stats.duration_s)
                metadata.update(_store_metadata(store))
                if stats.error_samples:
                    metadata["error_samples"] = MetadataValue.md("\n".join(f"- `{e}`" for e in stats.error_samples))
                if stats.outcomes["failed"] or stats.outcomes["error"]:
                    context.log.warning(f"{stream.endpoint}/{stream.container}: {stats.outcomes['failed']} files "
                                        f"failed (retried next run), {stats.outcomes['error']} gave up after their "
                                        "attempts")
                by_container[stream.container] = metadata
            _report(context, by_container, failures)
        finally:
            store.close()

    def load_input(self, context: InputContext) -> list[ChangedFiles]:  # upstream key: <endpoint>/files
        endpoint = context.upstream_output.asset_key.path[0]
        return [ChangedFiles(self.connector, endpoint, key) for key in _partition_keys(context)]
