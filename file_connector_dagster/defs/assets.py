"""Asset factories: per endpoint, `<endpoint>/listing` (the synced listing, one partition per
container) and `<endpoint>/files` (the endpoint's processors applied to what changed).

The key's last part says what the node is: the UI titles graph nodes and sidebar entries with it,
inside a group named after the endpoint."""



import warnings

from dagster import (
    AssetExecutionContext, AssetIn, AssetKey, AssetsDefinition, BackfillPolicy, BetaWarning, Config, DynamicPartitionsDefinition,
    Failure,
    asset,
)

from ..config import EndpointConfig, dagster_name
from ..engine import ChangeStream, error_text, redacted, open_changes, register_endpoint
from ..errors import FileConnectorError
from ..processors.base import build_processors
from .io_managers import ChangedFiles, ProcessingStreams
from .resources import FileConnectorResource


class ListingConfig(Config):
    full: bool = False  # forget the cursor and list the container again (deletions found at the end)
    allow_mass_delete: bool = False  # let this run tombstone more than the endpoint's delete_guard allows


def listing_key(endpoint_name: str) -> AssetKey:
    return AssetKey([endpoint_name, "listing"])


def files_key(endpoint_name: str) -> AssetKey:
    return AssetKey([endpoint_name, "files"])


def endpoint_of(key: AssetKey) -> str:
    """The endpoint name in a listing or files asset key."""
    return key.path[0]


def group_name(endpoint: EndpointConfig) -> str:
    return dagster_name(endpoint.name)


def partitions_for(endpoint: EndpointConfig) -> DynamicPartitionsDefinition:
    """The endpoint's containers (defined once per endpoint, named after it)."""
    return DynamicPartitionsDefinition(name=f"{group_name(endpoint)}_containers")


# A backfill (or a schedule tick) over many containers is one run, not one run worker per container;
# each container inside it still syncs on its own (see io_managers). Beta in 1.13: the warning would
# otherwise print on every CLI command and code location load.
ONE_RUN = BackfillPolicy.single_run()
warnings.filterwarnings("ignore", message=".*`backfill_policy`.*", category=BetaWarning)


def build_endpoint_assets(endpoint: EndpointConfig, store_kind: str,
                          partitions: DynamicPartitionsDefinition) -> list[AssetsDefinition]:
    name = endpoint.name
    tags = {"file_connector/source": endpoint.type, "file_connector/endpoint": name}

    @asset(
        key=listing_key(name),
        description=f"File listing of endpoint {name} ({endpoint.type}), one partition per container.",
        partitions_def=partitions,
        group_name=group_name(endpoint),
        kinds={endpoint.type, store_kind},
        tags=tags,
        io_manager_key="listings_io_manager",
        pool=f"file_connector_{endpoint.type}",
        backfill_policy=ONE_RUN,
    )
    def listing(context: AssetExecutionContext, config: ListingConfig,
                connector: FileConnectorResource) -> list[ChangeStream]:
        try:
            source = connector.source(name)
            with connector.store() as store:
                register_endpoint(store, endpoint)
        except FileConnectorError as exc:
            if exc.retryable:
                raise redacted(exc)
            raise Failure(description=error_text(exc), allow_retries=False) from None
        # nothing is read yet: the IO manager takes each container's lease, then reads its cursor
        guard = connector.endpoint(name).delete_guard.guard(allow=config.allow_mass_delete)
        return [open_changes(source, container, full=config.full, guard=guard,
                             processors=build_processors(endpoint.processors))
                for container in context.partition_keys]

    @asset(
        key=files_key(name),
        # Shown in the UI: why this node reads "Unsynced" after its listing was materialized alone.
        description=f"Files of endpoint {name} after its processors "
                    f"({', '.join(p.type for p in endpoint.processors) or 'none'}). The sync job runs it right "
                    f"after the listing; materializing the listing alone leaves it Unsynced until it runs.",
        ins={"listing": AssetIn(key=listing_key(name))},
        partitions_def=partitions,
        group_name=group_name(endpoint),
        kinds={store_kind},
        tags=tags,
        io_manager_key="files_io_manager",
        backfill_policy=ONE_RUN,
    )
    def files(context: AssetExecutionContext, listing: list[ChangedFiles]) -> ProcessingStreams:
        return ProcessingStreams(changed.process(build_processors(endpoint.processors), context.log)
                                 for changed in listing)

    return [listing, files]
