"""Asset factories: per endpoint, `<endpoint>/listing` (the synced listing, one partition per
container) and `<endpoint>/files` (the endpoint's processors applied to what changed).

The key's last part says what the node is: the UI titles graph nodes and sidebar entries with it,
inside a group named after the endpoint."""



import warnings
from functools import lru_cache

from dagster import (
    AssetExecutionContext, AssetKey, AssetsDefinition, BackfillPolicy, BetaWarning, Config, DynamicPartitionsDefinition,
    Failure, In, OpDefinition, Out, op,
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


# The ops are built once (per source type: the listing runs in the type's pool) and each endpoint gets
# renamed copies (`<endpoint>__listing`, `<endpoint>__files`, the names `@asset` gave them); they read
# their endpoint from the asset key they materialize and its settings from connector.yaml at run time.
# `@asset` per endpoint cost ~1 ms each in signature inspection and config-schema inference
# (docs/benchmarks.md, P4). (One op object shared by all endpoints would be cheaper still, but Dagster
# 1.13 builds a graph holding it n times in n^2: 8 s for the implicit asset job of 500 endpoints.)
def _listing(context: AssetExecutionContext, config: ListingConfig,
             connector: FileConnectorResource) -> list[ChangeStream]:
    name = endpoint_of(context.asset_key)
    try:
        endpoint = connector.endpoint(name)
        source = connector.source(name)
        with connector.store() as store:
            register_endpoint(store, endpoint, connector.connector_config())
    except FileConnectorError as exc:
        if exc.retryable:
            raise redacted(exc)
        raise Failure(description=error_text(exc), allow_retries=False) from None
    # nothing is read yet: the IO manager takes each container's lease, then reads its cursor
    guard = endpoint.delete_guard.guard(allow=config.allow_mass_delete)
    return [open_changes(source, container, full=config.full, guard=guard,
                         processors=build_processors(endpoint.processors))
            for container in context.partition_keys]


def _files(context: AssetExecutionContext, listing: list[ChangedFiles],
           connector: FileConnectorResource) -> ProcessingStreams:
    processors = connector.endpoint(endpoint_of(context.asset_key)).processors
    return ProcessingStreams(changed.process(build_processors(processors), context.log) for changed in listing)


@lru_cache(maxsize=None)
def _listing_op(source_type: str) -> OpDefinition:
    return op(name="listing", pool=f"file_connector_{source_type}",
              out={"listing": Out(io_manager_key="listings_io_manager")})(_listing)


_FILES_OP = op(name="files", ins={"listing": In()}, out={"files": Out(io_manager_key="files_io_manager")})(_files)


def build_endpoint_assets(endpoint: EndpointConfig, store_kind: str,
                          partitions: DynamicPartitionsDefinition) -> list[AssetsDefinition]:
    name = endpoint.name
    tags = {"file_connector/source": endpoint.type, "file_connector/endpoint": name}
    op_name = listing_key(name).to_python_identifier()  # <endpoint>__listing, `-` as `_`
    listing = AssetsDefinition.from_op(
        _listing_op(endpoint.type).with_replaced_properties(name=op_name),
        keys_by_output_name={"listing": listing_key(name)},
        partitions_def=partitions,
        group_name=group_name(endpoint),
        descriptions_by_output_name={
            "listing": f"File listing of endpoint {name} ({endpoint.type}), one partition per container."},
        tags_by_output_name={"listing": {**tags, **_kind_tags(endpoint.type, store_kind)}},
        backfill_policy=ONE_RUN,
    )
    files = AssetsDefinition.from_op(
        _FILES_OP.with_replaced_properties(name=files_key(name).to_python_identifier()),
        keys_by_input_name={"listing": listing_key(name)},
        keys_by_output_name={"files": files_key(name)},
        partitions_def=partitions,
        group_name=group_name(endpoint),
        # Shown in the UI: why this node reads "Unsynced" after its listing was materialized alone.
        descriptions_by_output_name={
            "files": f"Files of endpoint {name} after its processors "
                     f"({', '.join(p.type for p in endpoint.processors) or 'none'}). The sync job runs it right "
                     f"after the listing; materializing the listing alone leaves it Unsynced until it runs."},
        tags_by_output_name={"files": {**tags, **_kind_tags(store_kind)}},
        backfill_policy=ONE_RUN,
    )
    return [listing, files]


def _kind_tags(*kinds: str) -> dict[str, str]:
    """What `kinds=` on an asset becomes (the UI's kind badges)."""
    return {f"dagster/kind/{kind}": "" for kind in kinds}
