"""benchmarks/run.py still runs end to end (tiny N, SQLite only, no dlt): `make bench` is not left to rot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_benchmark_runs_the_cli_and_writes_its_report(tmp_path: Path) -> None:
    out = tmp_path / "benchmarks.md"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--items", "1500", "--small-items", "0",
         "--stores", "sqlite", "--no-dlt", "--endpoints", "0", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    report = out.read_text()
    # the CLI synced the library three times (first, no change, 1% changed) and the report says so
    for row in ("fetch+parse", "P1 first sync -> sqlite", "P2 no-change re-sync -> sqlite", "P3 1% changed -> sqlite"):
        assert f"| {row}" in report
    assert "load average" in report
