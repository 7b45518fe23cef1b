"""The Graph fake's fast paths answer exactly what its plain rendering does."""

from __future__ import annotations

import json

from tests.fakes.graph import FakeGraph, validate_drive_item
from tests.fakes.tls import make_tls


def test_template_rendering_matches_item_json() -> None:
    graph = FakeGraph(tls=make_tls())
    drive = graph.add_drive(graph.add_site("sites/eng", "Engineering"), "Shared Documents", items=3000,
                            folders_every=25)
    onedrive = graph.add_drive(None, "OneDrive ü", items=200, user="ada@contoso.com")

    def check(d, ks) -> None:
        for k in ks:
            if d._base_id(k) in d.changed:  # only untouched items are rendered from the template
                continue
            text = d.base_item_text(k)
            assert json.loads(text) == d.item_json(d._base_state(k))
            assert text == json.dumps(d.item_json(d._base_state(k)))
            assert not validate_drive_item(json.loads(text))

    check(drive, range(1, 3000))
    check(onedrive, range(1, 200))
    # paths follow renamed and moved folders (the cache is dropped on every change)
    drive.rename(drive._base_id(3), "Renamed Folder #1 ✓")
    drive.move(drive._base_id(12), drive._base_id(5))
    check(drive, range(1, 3000))
    pages, after = [], 0
    while True:
        text_items, last, done = drive.delta_page_text(0, after, 200)
        items, last_plain, done_plain = drive.delta_page(0, after, 200)
        assert (last, done) == (last_plain, done_plain) and [json.loads(t) for t in text_items] == items
        pages.append(items)
        after = last
        if done:
            break
    assert sum(len(p) for p in pages) == 3000  # the root, folders and files, each once
