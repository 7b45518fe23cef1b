"""`<endpoint>/report`: a summary of what the endpoint's inventory holds (pandas, read in chunks), shown
as table metadata and written as CSV (and Parquet with pyarrow) under `reports_dir`.

One subsettable multi-asset carries every endpoint's report (an asset definition per endpoint costs
load time at 500 endpoints)."""

from typing import Iterator

from dagster import (
    AssetExecutionContext, AssetKey, AssetSpec, AssetsDefinition, AutomationCondition, MaterializeResult,
    MetadataValue, TableColumn, TableRecord, TableSchema, multi_asset,
)

from ..config import ConnectorConfig
from ..inventory import summarize
from .assets import endpoint_of, files_key, group_name
from .resources import FileConnectorResource


def report_key(endpoint_name: str) -> AssetKey:
    return AssetKey([endpoint_name, "report"])


def _table(frame) -> MetadataValue:
    columns = [TableColumn(str(c), "integer" if str(frame[c].dtype).startswith("int") else "string")
               for c in frame.columns]
    records = [TableRecord({str(k): (int(v) if str(frame[k].dtype).startswith("int") else str(v))
                            for k, v in row.items()}) for row in frame.head(50).to_dict("records")]
    return MetadataValue.table(records, schema=TableSchema(columns))


def build_reports(config: ConnectorConfig) -> list[AssetsDefinition]:
    endpoints = config.active_endpoints
    if not endpoints:
        return []
    hourly = AutomationCondition.on_cron("0 * * * *")  # immutable: one serves every spec
    specs = [AssetSpec(report_key(ep.name), deps=[files_key(ep.name)], group_name=group_name(ep),
                       kinds={"pandas", "csv"}, tags={"file_connector/endpoint": ep.name}, skippable=True,
                       automation_condition=hourly,
                       description=f"What endpoint {ep.name} holds: files and bytes per container, folder, type "
                                   f"and age; largest, duplicate, excluded, infected and errored files.")
             for ep in endpoints]

    @multi_asset(specs=specs, can_subset=True, name="inventory_reports")
    def reports(context: AssetExecutionContext, connector: FileConnectorResource) -> Iterator[MaterializeResult]:
        cfg = connector.connector_config()
        with connector.store() as store:
            for key in sorted(context.selected_asset_keys, key=lambda k: k.to_string()):
                summary = summarize(store, endpoint_of(key))
                written = summary.write(cfg.resolve_path(cfg.reports_dir))
                metadata = {"files": MetadataValue.int(summary.files), "bytes": MetadataValue.int(summary.bytes),
                            "summary": MetadataValue.md(summary.markdown()),
                            "written": MetadataValue.md("\n".join(f"- `{p}`" for p in written))}
                metadata.update({name: _table(frame) for name, frame in summary.tables.items()})
                yield MaterializeResult(asset_key=key, metadata=metadata)

    return [reports]
