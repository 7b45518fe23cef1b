"""IO managers: they commit change streams and processing results to the configured store, page by
page, and report the counts they saw as materialization metadata.

A run may cover several containers (partitions) of an endpoint (single-run backfills, schedule ticks):
each container is still its own sync (lease, transactions a page, sync log) and gets its own
materialization with its own counts; one failing container does not stop the others.
"""


from dataclasses import dataclass
from typing import Iterator

from dagster import AssetMaterialization, ConfigurableIOManager, Failure, InputContext, MetadataValue, OutputContext

from ..engine import ChangeStream, commit_changes, error_text, redacted
from ..errors import FileConnectorError
from ..records import FileRecord
from ..stores import Store
from .resources import FileConnectorResource


@dataclass
class ChangedFiles:
    """A lazy reader of one container's records, page by page: those changed since processing last
    ran (unprocessed_only), or all live ones."""

    connector: FileConnectorResource
    endpoint: str
    container: str
    unprocessed_only: bool = True

    def pages(self, page_size: int = 1000) -> Iterator[list[FileRecord]]:
        store = self.connector.store()
        try:
            if self.unprocessed_only:
                since = store.sync_state(self.endpoint, self.container).processed_until
                yield from store.iter_files(self.endpoint, self.container, changed_since=since, page_size=page_size)
            else:
                yield from store.iter_files(self.endpoint, self.container, include_deleted=False, page_size=page_size)
        finally:
            store.close()


@dataclass
class ProcessedPages:
    """A lazy stream of one container's processed pages for the files IO manager to store."""

    endpoint: str
    container: str
    pages: Iterator[list[FileRecord]]


def _store_metadata(store: Store) -> dict[str, MetadataValue]:
    return {"store": MetadataValue.text(store.label)}


def _partition_keys(context: InputContext | OutputContext) -> list[str]:
    return list(context.asset_partition_keys) if context.has_asset_partitions else []


def _report(context: OutputContext, by_container: dict[str, dict], failures: list[tuple[str, FileConnectorError]]) -> None:
    """Each container's counts as its own partition's materialization; failures as one step failure."""
    if not failures and len(by_container) == 1:
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


def _single_failure(exc: FileConnectorError) -> Exception:
    return redacted(exc) if exc.retryable else Failure(description=error_text(exc), allow_retries=False)


class ListingsIOManager(ConfigurableIOManager):
    """Commits each container's change stream (each page with its cursor, one transaction a page)."""

    connector: FileConnectorResource

    def handle_output(self, context: OutputContext, obj: list[ChangeStream]) -> None:
        store = self.connector.store()
        by_container: dict[str, dict] = {}
        failures: list[tuple[str, FileConnectorError]] = []

        def progress(page, stats) -> None:
            if stats.pages % 50 == 0:
                context.log.info(f"{stats.endpoint}/{stats.container}: {stats.pages} pages, {stats.listed} files")

        try:
            for stream in obj:
                container = stream.container
                try:
                    stats = commit_changes(store, stream, on_page=progress)
                except FileConnectorError as exc:
                    if len(obj) == 1:
                        raise _single_failure(exc) from None
                    context.log.error(f"{stream.endpoint}/{container}: {error_text(exc)}")
                    failures.append((container, exc))
                    continue
                metadata: dict = {k: MetadataValue.int(v) for k, v in stats.counts().items()}
                metadata["duration_s"] = MetadataValue.float(stats.duration_s)
                metadata["full_listing"] = MetadataValue.bool(stats.full_listing)
                metadata.update(_store_metadata(store))
                if stats.error_samples:
                    metadata["error_samples"] = MetadataValue.md("\n".join(f"- `{e}`" for e in stats.error_samples))
                if stats.errors:
                    context.log.warning(f"{stream.endpoint}/{container}: {stats.errors} files could not be listed")
                by_container[container] = metadata
            _report(context, by_container, failures)
        finally:
            for source in {id(stream.source): stream.source for stream in obj}.values():  # one per endpoint
                source.close()
            store.close()

    def load_input(self, context: InputContext) -> list[ChangedFiles]:  # upstream key: <endpoint>/listing
        endpoint = context.upstream_output.asset_key.path[0]
        return [ChangedFiles(self.connector, endpoint, key) for key in _partition_keys(context)]


class FilesIOManager(ConfigurableIOManager):
    """Stores processors' results for each page and advances each container's processing watermark."""

    connector: FileConnectorResource

    def handle_output(self, context: OutputContext, obj: list[ProcessedPages]) -> None:
        store = self.connector.store()
        by_container: dict[str, dict] = {}
        failures: list[tuple[str, FileConnectorError]] = []
        try:
            for processed in obj:
                counts = {"processed": 0, "excluded": 0, "deleted": 0, "processing_errors": 0}
                try:
                    for page in processed.pages:
                        store.apply_processing(processed.endpoint, processed.container, page)
                        counts["processed"] += len(page)
                        counts["excluded"] += sum(1 for r in page if r.excluded_by)
                        counts["deleted"] += sum(1 for r in page if r.deleted_at)
                        counts["processing_errors"] += sum(1 for r in page if r.processing_errors)
                except FileConnectorError as exc:
                    if len(obj) == 1:
                        raise _single_failure(exc) from None
                    context.log.error(f"{processed.endpoint}/{processed.container}: {error_text(exc)}")
                    failures.append((processed.container, exc))
                    continue
                metadata: dict = {k: MetadataValue.int(v) for k, v in counts.items()}
                processed_until = store.sync_state(processed.endpoint, processed.container).processed_until
                if processed_until:
                    metadata["processed_until"] = MetadataValue.text(processed_until.isoformat())
                metadata.update(_store_metadata(store))
                by_container[processed.container] = metadata
            _report(context, by_container, failures)
        finally:
            store.close()

    def load_input(self, context: InputContext) -> list[ChangedFiles]:  # upstream key: <endpoint>/files
        endpoint = context.upstream_output.asset_key.path[0]
        return [ChangedFiles(self.connector, endpoint, key, unprocessed_only=False) for key in _partition_keys(context)]
