"""IO managers: they commit change streams and processing results to the configured store, page by
page, and report the counts they saw as materialization metadata."""


from dataclasses import dataclass
from typing import Iterator

from dagster import ConfigurableIOManager, Failure, InputContext, MetadataValue, OutputContext

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
    """A lazy stream of processed pages for the files IO manager to store."""

    endpoint: str
    container: str
    pages: Iterator[list[FileRecord]]


def _store_metadata(store: Store) -> dict[str, MetadataValue]:
    return {"store": MetadataValue.text(store.label)}


class ListingsIOManager(ConfigurableIOManager):
    """Commits a listing asset's ChangeStream (each page with its cursor, one transaction a page)."""

    connector: FileConnectorResource

    def handle_output(self, context: OutputContext, obj: ChangeStream) -> None:
        store = self.connector.store()
        try:
            def progress(page, stats) -> None:
                if stats.pages % 50 == 0:
                    context.log.info(f"{obj.endpoint}/{obj.container}: {stats.pages} pages, {stats.listed} files")

            try:
                stats = commit_changes(store, obj, on_page=progress)
            except FileConnectorError as exc:
                if exc.retryable:
                    raise redacted(exc)
                raise Failure(description=error_text(exc), allow_retries=False) from None
            metadata: dict = {k: MetadataValue.int(v) for k, v in stats.counts().items()}
            metadata["duration_s"] = MetadataValue.float(stats.duration_s)
            metadata["full_listing"] = MetadataValue.bool(stats.full_listing)
            metadata.update(_store_metadata(store))
            if stats.error_samples:
                metadata["error_samples"] = MetadataValue.md("\n".join(f"- `{e}`" for e in stats.error_samples))
            context.add_output_metadata(metadata)
            if stats.errors:
                context.log.warning(f"{obj.endpoint}/{obj.container}: {stats.errors} files could not be listed")
        finally:
            obj.source.close()
            store.close()

    def load_input(self, context: InputContext) -> ChangedFiles:  # upstream key: <endpoint>/listing
        return ChangedFiles(self.connector, context.upstream_output.asset_key.path[0], context.partition_key)


class FilesIOManager(ConfigurableIOManager):
    """Stores processors' results for each page and advances the container's processing watermark."""

    connector: FileConnectorResource

    def handle_output(self, context: OutputContext, obj: ProcessedPages) -> None:
        store = self.connector.store()
        counts = {"processed": 0, "excluded": 0, "deleted": 0, "processing_errors": 0}
        try:
            for page in obj.pages:
                store.apply_processing(obj.endpoint, obj.container, page)
                counts["processed"] += len(page)
                counts["excluded"] += sum(1 for r in page if r.excluded_by)
                counts["deleted"] += sum(1 for r in page if r.deleted_at)
                counts["processing_errors"] += sum(1 for r in page if r.processing_errors)
            metadata: dict = {k: MetadataValue.int(v) for k, v in counts.items()}
            processed_until = store.sync_state(obj.endpoint, obj.container).processed_until
            if processed_until:
                metadata["processed_until"] = MetadataValue.text(processed_until.isoformat())
            metadata.update(_store_metadata(store))
            context.add_output_metadata(metadata)
        finally:
            store.close()

    def load_input(self, context: InputContext) -> ChangedFiles:  # upstream key: <endpoint>/files
        return ChangedFiles(self.connector, context.upstream_output.asset_key.path[0], context.partition_key,
                            unprocessed_only=False)
