PYTHON ?= python3

.PHONY: install test soak bench bench-1m bench-processing bench-runs bench-autodesk bench-drive sync dev

install:
	$(PYTHON) -m pip install -q -e .

# Installs the test dependencies (Debian's chromium for the browser test included), makes sure the local PostgreSQL answers, runs the whole suite.
test:
	$(PYTHON) -m pip install -q -e ".[test]"
	@test -x /usr/bin/chromium || (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium)
	@pg_isready -q -h 127.0.0.1 -p 5432 || pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql | sort -n | tail -1) main start
	@for i in $$(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
	$(PYTHON) -m pytest -q

# Not part of `make test`: `file-connector sync` end to end against the floor and dlt, written to
# docs/benchmarks.md (a few minutes at the default 100k items). BENCH_ARGS="--items 300000" for more.
bench:
	$(PYTHON) -m pip install -q -e ".[test,bench]"
	@pg_isready -q -h 127.0.0.1 -p 5432 || pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql | sort -n | tail -1) main start
	@for i in $$(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
	$(PYTHON) benchmarks/run.py $(BENCH_ARGS)

# Not part of `make test` nor `make bench`: P1-P3 at 1,000,000 items into PostgreSQL against the floor and dlt
# (about 12 minutes), written to docs/benchmarks-1m.md.
bench-1m:
	$(PYTHON) -m pip install -q -e ".[test,bench]"
	@pg_isready -q -h 127.0.0.1 -p 5432 || pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql | sort -n | tail -1) main start
	$(PYTHON) benchmarks/run.py --items 1000000 --stores postgres --small-items 0 --endpoints 0 --out docs/benchmarks-1m.md

# Not part of `make test`: the Google Drive source into PostgreSQL against fetch+parse of the same pages,
# at 25k and 100k files (docs/google_drive.md, Performance). DRIVE_BENCH_ARGS="--files 100000 --rounds 3".
bench-drive:
	$(PYTHON) -m pip install -q -e ".[test]"
	@pg_isready -q -h 127.0.0.1 -p 5432 || pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql | sort -n | tail -1) main start
	$(PYTHON) benchmarks/google_drive_bench.py $(DRIVE_BENCH_ARGS)

# Autodesk: one project of 50k items in 2k folders from the APS fake into PostgreSQL against fetch+parse of
# the same pages, and the no-change re-sync's requests (docs/autodesk.md, Performance).
bench-autodesk: install
	@pg_isready -q -h 127.0.0.1 -p 5432 || pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql | sort -n | tail -1) main start
	$(PYTHON) benchmarks/autodesk_bench.py --no-sqlite $(BENCH_ARGS)

sync: install
	file-connector sync --config examples/connector.yaml

dev: install
	DAGSTER_HOME=$(CURDIR) dagster dev -w workspace.yaml

# The files step against the listing (100k files, SQLite and PostgreSQL) and content hashing of 1,000
# files of 1 MB against sha256sum, in one run (prints figures and ratios; not part of `make test`).
bench-processing: install
	$(PYTHON) benchmarks/processing_bench.py --files 100000 --hash-files 1000

# The fault suite's long run: 10,000 seeded schedules (local, SharePoint, Google Drive and ACC into SQLite); prints how many ran
# and how many violated an invariant (each violation with the seed that reproduces it).
soak:
	$(PYTHON) -m pip install -q -e ".[test]"
	$(PYTHON) -m tests.faults $${SCHEDULES:-10000}

# A sync through Dagster's daemon next to the CLI sync of the same container (prints seconds and ratios).
bench-runs: install
	$(PYTHON) benchmarks/run_overhead.py --containers 8
