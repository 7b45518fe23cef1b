"""Processing is exact whatever fails half-way: per-file state in every store (sqlite, postgres, mongo)."""

from __future__ import annotations

from collections import Counter

import pytest

from file_connector_dagster.engine import sync_container
from file_connector_dagster.processing import process_container
from file_connector_dagster.processors.base import Processor, ProcessorContext, ProcessorOptions, ProcessResult
from file_connector_dagster.processors.builtin import Filter, FilterOptions

from .stores.helpers import ENDPOINT, ListSource, all_files, rec

C = "library"


class Killed(BaseException):
    """The process dying (not an error a processor reports)."""


class Recorder(Processor):
    """Counts every file version it processed successfully; raises on `bad` files, dies after `die_after` batches."""

    type_name = "recorder"

    def __init__(self, bad: set[str] = frozenset(), die_after: int | None = None, max_attempts: int = 3):
        super().__init__(ProcessorOptions(max_attempts=max_attempts))
        self.bad, self.die_after = set(bad), die_after
        self.batches = 0
        self.done: Counter[tuple[str, str]] = Counter()

    def process(self, batch, context: ProcessorContext):
        self.batches += 1
        if self.die_after is not None and self.batches > self.die_after:
            raise Killed()
        if any(r.external_id in self.bad for r in batch):
            raise ValueError("cannot read " + ", ".join(r.external_id for r in batch if r.external_id in self.bad))
        for r in batch:
            self.done[(r.external_id, r.change_key)] += 1
        return [ProcessResult.processed({"seen": r.change_key}) for r in batch]


def listed(store, files, page_size=25):
    stats = sync_container(ListSource({C: files}, page_size=page_size), store, C, full=True, prefetch=0)
    assert stats.status == "success"


def statuses(store) -> Counter:
    return Counter(f.processing_status for f in all_files(store, include_deleted=False).values())


def test_a_processor_raising_on_some_files_fails_only_those_and_they_are_retried(store):
    listed(store, [rec(n) for n in range(40)])  # one listing page shares one updated_at
    bad = {"f3", "f17", "f38"}
    first = Recorder(bad=bad)
    stats = process_container(store, [first], ENDPOINT, C, page_size=10)
    assert (stats.outcomes["processed"], stats.outcomes["failed"]) == (37, 3)
    files = all_files(store)
    assert {k for k, f in files.items() if f.processing_status == "pending"} == bad
    assert files["f3"].processing_errors == ["recorder: ValueError: cannot read f3"]
    assert files["f3"].processing_attempts == 1 and files["f4"].metadata["processors"] == {"recorder": {"seen": "v1"}}

    second = Recorder()  # the cause is fixed: the next run does exactly the three failed files
    stats = process_container(store, [second], ENDPOINT, C, page_size=10)
    assert set(second.done) == {(k, "v1") for k in bad} and stats.outcomes["processed"] == 3
    assert all(n == 1 for n in (first.done + second.done).values()) and len(first.done + second.done) == 40
    assert statuses(store) == {"processed": 40}
    assert all(f.processing_errors == [] and f.processed_key == "v1" for f in all_files(store).values())


def test_attempts_run_out_then_error_until_the_file_changes(store):
    listed(store, [rec(n) for n in range(5)])
    for run in range(2):
        stats = process_container(store, [Recorder(bad={"f2"}, max_attempts=2)], ENDPOINT, C)
    assert (stats.outcomes["error"], stats.outcomes["failed"]) == (1, 0)
    assert all_files(store)["f2"].processing_status == "error" and all_files(store)["f2"].processing_attempts == 2
    assert process_container(store, [Recorder(bad={"f2"})], ENDPOINT, C).pages == 0  # given up: not retried
    listed(store, [rec(n, change_key="v2" if n == 2 else "v1") for n in range(5)])
    again = Recorder()
    process_container(store, [again], ENDPOINT, C)
    assert set(again.done) == {("f2", "v2")} and all_files(store)["f2"].processing_status == "processed"


def test_files_step_killed_after_k_of_n_pages_then_rerun_processes_each_changed_file_once(store):
    listed(store, [rec(n) for n in range(60)])
    dying = Recorder(die_after=2)
    with pytest.raises(Killed):
        process_container(store, [dying], ENDPOINT, C, page_size=10)
    assert sum(dying.done.values()) == 20 and statuses(store) == {"processed": 20, "pending": 40}

    rerun = Recorder()
    stats = process_container(store, [rerun], ENDPOINT, C, page_size=10)
    assert stats.outcomes["processed"] == 40 and stats.pages == 4
    total = dying.done + rerun.done
    assert len(total) == 60 and set(total.values()) == {1}  # every file once, none skipped
    assert statuses(store) == {"processed": 60}

    # some files change (and one is deleted, one added): only those are processed, each once
    files = [rec(n, change_key="v2" if n % 7 == 0 else "v1") for n in range(1, 61)]
    listed(store, files)
    changed = Recorder()
    process_container(store, [changed], ENDPOINT, C, page_size=10)
    assert set(changed.done) == {(f"f{n}", "v2") for n in range(7, 60, 7)} | {("f60", "v1")}
    assert set(changed.done.values()) == {1}
    nothing = Recorder()
    stats = process_container(store, [nothing], ENDPOINT, C)
    assert nothing.batches == 0 and stats.pages == 0


def test_filters_are_decided_while_the_listing_commits(store):
    chain = [Filter(FilterOptions(exclude=["*.tmp"], max_bytes=150))]
    files = [rec(1), rec(2, title="x.tmp"), rec(3, size=500), rec(4)]
    stats = sync_container(ListSource({C: files}, page_size=2), store, C, prefetch=2, processors=chain)
    assert stats.decided == {"processed": 2, "skipped": 2}
    assert list(store.iter_due(ENDPOINT, C)) == []  # nothing left for the files step
    stored = all_files(store)
    assert stored["f2"].excluded_by == "filter" and stored["f3"].processing_status == "skipped"
    assert stored["f3"].metadata["processors"]["filter"] == {"skipped": "larger than 150 bytes"}
    # a re-listing of unchanged files decides (and writes) nothing
    again = sync_container(ListSource({C: files}, page_size=2), store, C, full=True, processors=chain)
    assert again.unchanged == 4 and again.decided == {}


def test_no_processors_means_nothing_to_do(store):
    sync_container(ListSource({C: [rec(n) for n in range(30)]}, page_size=10), store, C, processors=[])
    assert statuses(store) == {"processed": 30} and list(store.iter_due(ENDPOINT, C)) == []


def test_files_a_leading_filter_skips_never_reach_the_files_step(store):
    recorder = Recorder()
    chain = [Filter(FilterOptions(exclude=["*.tmp"])), recorder]
    files = [rec(1), rec(2, title="x.tmp", path="folder/x.tmp"), rec(3)]
    stats = sync_container(ListSource({C: files}, page_size=2), store, C, processors=chain)
    assert stats.decided == {"skipped": 1}
    assert [r.external_id for p in store.iter_due(ENDPOINT, C) for r in p] == ["f1", "f3"]
    result = process_container(store, chain, ENDPOINT, C)
    assert set(recorder.done) == {("f1", "v1"), ("f3", "v1")} and result.outcomes["processed"] == 2
    stored = all_files(store)
    assert stored["f1"].metadata["processors"] == {"filter": {}, "recorder": {"seen": "v1"}}
    assert stored["f2"].excluded_by == "filter" and stored["f2"].processing_status == "skipped"


def test_two_concurrent_files_steps_never_overwrite_a_decided_result(store_type, store_factory):
    """Two runs' files steps on one container (a CLI sync beside a scheduled run: the files step takes
    no lease) read the same pending files; A decides and saves them, then B's processors fail (A used up
    the quota). B's results must not land on rows A already decided: a result is saved only on a row
    that is still due (compare-and-set on the processing state), so nothing is processed again later."""
    import threading

    from file_connector_dagster.processing import commit_processing, open_processing

    store, other = store_factory(store_type), store_factory(store_type)
    store.migrate()
    listed(store, [rec(n) for n in range(30)])
    both_read = threading.Barrier(2)
    a_saved = threading.Event()

    class Racer(Processor):
        type_name = "racer"

        def __init__(self, fail: bool):
            super().__init__(ProcessorOptions(max_attempts=3))
            self.fail, self.calls = fail, 0

        def process(self, batch, context):
            first = self.calls == 0
            self.calls += len(batch)
            if first:
                both_read.wait(30)  # both steps hold the same pending page
            if self.fail:
                assert a_saved.wait(30)
                raise RuntimeError("quota used up")
            return [ProcessResult.processed({"by": "a"}) for _ in batch]

    a, b = Racer(fail=False), Racer(fail=True)
    outcome: dict[str, object] = {}

    def run_a() -> None:
        outcome["a"] = commit_processing(store, open_processing(store, [a], ENDPOINT, C, page_size=30),
                                         on_page=lambda page, stats: a_saved.set())

    thread = threading.Thread(target=run_a)
    thread.start()
    stats_b = process_container(other, [b], ENDPOINT, C, page_size=30)
    thread.join(60)
    assert outcome["a"].outcomes["processed"] == 30 and a.calls == 30 and b.calls >= 30  # the work is done twice
    assert stats_b.changed_meanwhile == 30  # B's results were not saved: A had decided those rows
    files = all_files(store)
    assert statuses(store) == {"processed": 30}
    assert all(f.processing_attempts == 0 and f.processing_errors == [] and
               f.metadata["processors"] == {"racer": {"by": "a"}} for f in files.values())
    assert process_container(store, [Recorder()], ENDPOINT, C).pages == 0  # nothing left to do again
