"""dlt's `rest_api` source listing one SharePoint library through Graph's delta API into PostgreSQL.

The comparison run by benchmarks/run.py, configured the way the dlt docs show for a paginated REST API:
OAuth2 client credentials, the `@odata.nextLink` followed as a JSON link, `value` as the data, merged on
the driveItem `id` into PostgreSQL. dlt has no delta-link state for Graph, so a re-run lists the library
again and merges it. Runs as its own process (so its peak RSS is its own):

    python benchmarks/dlt_graph.py FAKE_INFO_JSON DSN PIPELINES_DIR

FAKE_INFO_JSON is the line `python -m tests.fakes.graph` prints. dlt is the optional `bench` extra
(`pip install -e '.[bench]'`), never a dependency of the connector.
"""

from __future__ import annotations

import json
import sys
import time

import dlt
from dlt.sources.rest_api import rest_api_source


def main() -> None:
    info, dsn, pipelines_dir = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
    source = rest_api_source({
        "client": {
            "base_url": info["graph_url"] + "/",
            "auth": {
                "type": "oauth2_client_credentials",
                "access_token_url": f"{info['base_url']}/{info['tenant']}/oauth2/v2.0/token",
                "client_id": info["client_id"],
                "client_secret": info["client_secret"],
                "access_token_request_data": {"scope": f"{info['base_url']}/.default"},
            },
            "paginator": {"type": "json_link", "next_url_path": "['@odata.nextLink']"},
        },
        "resources": [{
            "name": "drive_items",
            "primary_key": "id",
            "write_disposition": "merge",
            "endpoint": {"path": f"drives/{info['drive_id']}/root/delta", "params": {"$top": 999},
                         "data_selector": "value"},
        }],
    })
    pipeline = dlt.pipeline(pipeline_name="graph_bench", destination=dlt.destinations.postgres(dsn),
                            dataset_name="graph", pipelines_dir=pipelines_dir, progress="log" if "-v" in sys.argv else None)
    started = time.perf_counter()
    info_out = pipeline.run(source)
    rows = pipeline.last_trace.last_normalize_info.row_counts.get("drive_items", 0)
    print(json.dumps({"seconds": time.perf_counter() - started, "rows": rows,
                      "failed": info_out.has_failed_jobs}))


if __name__ == "__main__":
    main()
