"""IO managers: they commit change streams and processing results to the configured store, page by
page, and report the counts they saw as materialization metadata."""


from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from dagster import ConfigurableIOManager, Failure, InputContext, MetadataValue, OutputContext

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
            for outcome, n in stats.decided.items():  # the endpoint's filters, applied as pages committed
                metadata[f"{outcome}_while_listing"] = MetadataValue.int(n)
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
    """Saves each processed page's per-file results (one transaction a page) and reports the outcomes."""

    connector: FileConnectorResource

    def handle_output(self, context: OutputContext, obj: ProcessingStream) -> None:
        store = self.connector.store()
        try:
            try:
                stats = commit_processing(store, obj)
            except FileConnectorError as exc:
                if exc.retryable:
                    raise
                raise Failure(description=f"{obj.endpoint}/{obj.container}: {error_text(exc)}",
                              allow_retries=False) from None
            metadata: dict = {k: MetadataValue.int(v) for k, v in stats.counts().items()}
            metadata["duration_s"] = MetadataValue.float(stats.duration_s)
            metadata.update(_store_metadata(store))
            if stats.error_samples:
                metadata["error_samples"] = MetadataValue.md("\n".join(f"- `{e}`" for e in stats.error_samples))
            context.add_output_metadata(metadata)
            if stats.outcomes["failed"] or stats.outcomes["error"]:
                context.log.warning(f"{obj.endpoint}/{obj.container}: {stats.outcomes['failed']} files failed "
                                    f"(retried next run), {stats.outcomes['error']} gave up after their attempts")
        finally:
            store.close()

    def load_input(self, context: InputContext) -> ChangedFiles:  # upstream key: <endpoint>/files
        return ChangedFiles(self.connector, context.upstream_output.asset_key.path[0], context.partition_key)
