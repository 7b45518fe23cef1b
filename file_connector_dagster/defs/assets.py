"""Asset factories: per endpoint, `listings/<endpoint>` (the synced listing, one partition per
container) and `files/<endpoint>` (the endpoint's processors applied to what changed)."""


from dagster import (
    AssetExecutionContext, AssetIn, AssetsDefinition, Config, DynamicPartitionsDefinition, Failure, asset,
)

from ..config import EndpointConfig
from ..engine import ChangeStream, error_text, open_changes, register_endpoint
from ..errors import FileConnectorError
from ..processing import ProcessingStream
from ..processors.base import build_processors
from .io_managers import ChangedFiles
from .resources import FileConnectorResource


class ListingConfig(Config):
    full: bool = False  # forget the cursor and list the container again (deletions found at the end)


def group_name(endpoint: EndpointConfig) -> str:
    return endpoint.name.replace("-", "_")


def partitions_for(endpoint: EndpointConfig) -> DynamicPartitionsDefinition:
    """The endpoint's containers (defined once per endpoint, named after it)."""
    return DynamicPartitionsDefinition(name=f"{group_name(endpoint)}_containers")


def build_endpoint_assets(endpoint: EndpointConfig, store_kind: str,
                          partitions: DynamicPartitionsDefinition) -> list[AssetsDefinition]:
    name = endpoint.name
    tags = {"file_connector/source": endpoint.type, "file_connector/endpoint": name}

    @asset(
        key=["listings", name],
        description=f"File listing of endpoint {name} ({endpoint.type}), one partition per container.",
        partitions_def=partitions,
        group_name=group_name(endpoint),
        kinds={endpoint.type, store_kind},
        tags=tags,
        io_manager_key="listings_io_manager",
        pool=f"file_connector_{endpoint.type}",
    )
    def listing(context: AssetExecutionContext, config: ListingConfig, connector: FileConnectorResource) -> ChangeStream:
        try:
            source = connector.source(name)
            store = connector.store()
        except FileConnectorError as exc:
            if exc.retryable:
                raise
            raise Failure(description=error_text(exc), allow_retries=False) from None
        try:
            register_endpoint(store, endpoint)
            return open_changes(source, store, context.partition_key, full=config.full,
                                processors=build_processors(endpoint.processors))
        finally:
            store.close()

    @asset(
        key=["files", name],
        description=f"Files of endpoint {name} after its processors "
                    f"({', '.join(p.type for p in endpoint.processors) or 'none'}).",
        ins={"listing": AssetIn(key=["listings", name])},
        partitions_def=partitions,
        group_name=group_name(endpoint),
        kinds={store_kind},
        tags=tags,
        io_manager_key="files_io_manager",
    )
    def files(context: AssetExecutionContext, listing: ChangedFiles) -> ProcessingStream:
        return listing.process(build_processors(endpoint.processors), context.log)

    return [listing, files]
