"""The benchmark script runs end to end on a small roster and its figures add up
(speed itself is never asserted here: that is the benchmark's own printout)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import bench  # noqa: E402


def test_bench_runs_and_accounts_for_every_form(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    n = 60
    assert (
        bench.main(
            [
                "--n",
                str(n),
                "--sample",
                "3",
                "--workers",
                "2",
                "--keep",
                str(tmp_path / "run"),
                "--json",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    figures = json.loads(out[out.index("{") :])
    assert figures["n"] == n
    c = figures["counts"]
    assert c["accepted"] + c["warning"] + c["rejected"] == n
    assert c["accepted"] > n // 2  # most returns are filled correctly
    for key in ("generate_per_s", "collect_per_s", "disk_files_per_s", "openpyxl_collect_per_s"):
        assert figures[key] > 0
    assert "generate" in out and "collect" in out and "this disk" in out
    # the forms, the returns, the ledger and the summary are there; the disk probe is gone
    run = tmp_path / "run"
    assert len(list((run / "forms").glob("*.xlsx"))) == n
    assert len(list((run / "returned").glob("*.xlsx"))) == n
    assert (run / "ledger.sqlite").exists() and (run / "summary.xlsx").exists()
    assert not (run / "disk").exists()
