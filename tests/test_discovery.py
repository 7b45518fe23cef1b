"""The discovery sensor: new containers become partitions with a first sync; vanished ones are
reported, then after the grace period tombstoned and their partitions removed."""

import json
import os
from datetime import datetime, timedelta, timezone

from dagster import DeleteDynamicPartitionsRequest, build_sensor_context, instance_for_test

from file_connector_dagster.config import load_config
from file_connector_dagster.defs import build_definitions
from file_connector_dagster.engine import sync_container
from file_connector_dagster.sources import build_source
from file_connector_dagster.stores import open_store


def test_vanished_container_is_reported_then_retired(tmp_path):
    for name in ("alpha", "beta"):
        (tmp_path / "share" / name).mkdir(parents=True)
        (tmp_path / "share" / name / "a.txt").write_text(name)
    (tmp_path / "share/beta/b.txt").write_text("b")
    (tmp_path / "connector.yaml").write_text(
        "store: {type: sqlite, path: inv.db}\nendpoints:\n  - name: share\n    type: local\n"
        "    endpoint_details: {roots: share, containers: subfolders}\n")
    config = load_config(tmp_path / "connector.yaml")
    defs = build_definitions(tmp_path / "connector.yaml")
    sensor = defs.resolve_sensor_def("discover_share")

    def tick(instance, cursor):
        with build_sensor_context(instance_ref=instance.get_ref(), resources=defs.resources, cursor=cursor) as context:
            result = sensor(context)
        for request in result.dynamic_partitions_requests:  # what the daemon does with them
            if isinstance(request, DeleteDynamicPartitionsRequest):
                for key in request.partition_keys:
                    instance.delete_dynamic_partition("share_containers", key)
            else:
                instance.add_dynamic_partitions("share_containers", list(request.partition_keys))
        return result

    with instance_for_test() as instance, open_store(config) as store:
        first = tick(instance, None)
        assert [r.run_key for r in first.run_requests] == ["first-sync:share:alpha..beta"]
        source = build_source(config, config.endpoint("share"))
        for key in ("alpha", "beta"):
            sync_container(source, store, key)

        os.rename(tmp_path / "share/beta", tmp_path / "beta-gone")
        second = tick(instance, first.cursor)
        assert not second.run_requests and not second.dynamic_partitions_requests
        since = json.loads(second.cursor)["vanished"]["beta"]
        assert second.skip_reason.skip_message == (
            f"no new containers (1 at the source); beta vanished at the source (since {since}); "
            "partition removed after 24 h")
        assert json.loads(tick(instance, second.cursor).cursor)["vanished"] == {"beta": since}  # the first time stays
        assert store.count_files("share", "beta") == 2  # nothing touched during the grace period

        # a day later: tombstoned, partition removed, the sync logged
        cursor = json.loads(second.cursor)
        cursor["vanished"]["beta"] = (datetime.now(timezone.utc) - timedelta(hours=25)).isoformat(timespec="seconds")
        third = tick(instance, json.dumps(cursor))
        assert [r.partition_keys for r in third.dynamic_partitions_requests] == [["beta"]]
        assert "beta retired: partition removed, 2 files tombstoned" in third.skip_reason.skip_message
        assert instance.get_dynamic_partitions("share_containers") == ["alpha"]
        assert store.count_files("share", "beta") == 0 and store.count_files("share", "alpha") == 1
        assert store.count_files("share", "beta", include_deleted=True) == 2
        assert json.loads(third.cursor)["vanished"] == {}

        # it comes back: a new first sync (a fresh run key), which restores its files
        os.rename(tmp_path / "beta-gone", tmp_path / "share/beta")
        fourth = tick(instance, third.cursor)
        assert [r.partition_key for r in fourth.run_requests] == ["beta"]
        assert fourth.run_requests[0].run_key.startswith("first-sync:share:after-")
        sync_container(source, store, "beta")
        assert store.count_files("share", "beta") == 2
        source.close()


def test_the_grace_period_is_configured_top_level_or_per_endpoint(tmp_path):
    for name in ("share", "docs"):
        for container in ("alpha", "beta"):
            (tmp_path / name / container).mkdir(parents=True)
            (tmp_path / name / container / "a.txt").write_text(container)
    path = tmp_path / "connector.yaml"
    path.write_text(
        "store: {type: sqlite, path: inv.db}\ndiscovery: {vanished_grace_hours: 2}\nendpoints:\n"
        "  - {name: share, type: local, endpoint_details: {roots: share, containers: subfolders}}\n"
        "  - {name: docs, type: local, endpoint_details: {roots: docs, containers: subfolders},\n"
        "     discovery: {vanished_grace_hours: 0.5}}\n")
    config = load_config(path)
    assert [ep.discovery.vanished_grace_hours for ep in config.endpoints] == [2, 0.5]
    defs = build_definitions(path)

    with instance_for_test() as instance, open_store(config) as store:
        for name in ("share", "docs"):
            sensor = defs.resolve_sensor_def(f"discover_{name}")
            partitions = f"{name}_containers"

            def tick(cursor):
                with build_sensor_context(instance_ref=instance.get_ref(), resources=defs.resources,
                                          cursor=cursor) as context:
                    result = sensor(context)
                for request in result.dynamic_partitions_requests:
                    if isinstance(request, DeleteDynamicPartitionsRequest):
                        for key in request.partition_keys:
                            instance.delete_dynamic_partition(partitions, key)
                    else:
                        instance.add_dynamic_partitions(partitions, list(request.partition_keys))
                return result

            first = tick(None)
            source = build_source(config, config.endpoint(name))
            for key in ("alpha", "beta"):
                sync_container(source, store, key)
            source.close()
            os.rename(tmp_path / name / "beta", tmp_path / f"{name}-beta-gone")
            second = tick(first.cursor)
            grace = {"share": 2, "docs": 0.5}[name]
            assert second.skip_reason.skip_message.endswith(f"partition removed after {grace:g} h")

            # missing for longer than this endpoint's grace (but less than the default 24 h): retired
            cursor = json.loads(second.cursor)
            cursor["vanished"]["beta"] = (datetime.now(timezone.utc) - timedelta(hours=grace, minutes=5)
                                          ).isoformat(timespec="seconds")
            third = tick(json.dumps(cursor))
            assert "beta retired: partition removed, 1 files tombstoned" in third.skip_reason.skip_message
            assert instance.get_dynamic_partitions(partitions) == ["alpha"]
            assert store.count_files(name, "beta") == 0


def test_a_wrong_grace_period_is_one_line_naming_the_field(tmp_path):
    import pytest

    from file_connector_dagster.errors import ConfigError

    path = tmp_path / "connector.yaml"
    path.write_text("discovery: {vanished_grace_hours: -1}\nendpoints:\n"
                    "  - {name: share, type: local, endpoint_details: {roots: share},\n"
                    "     discovery: {vanished_grace_hours: soon, grace: 2}}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    lines = str(info.value).splitlines()
    assert any("discovery.vanished_grace_hours: Input should be greater than or equal to 0" in line
               for line in lines), lines
    assert any("endpoint 'share': discovery.vanished_grace_hours: Input should be a valid number" in line
               for line in lines), lines
    assert any("endpoint 'share': discovery.grace: Extra inputs are not permitted" in line for line in lines), lines
