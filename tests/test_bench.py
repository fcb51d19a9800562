"""The benchmark script runs end to end on a small roster and its figures add up
(speed itself is never asserted here: that is the benchmark's own printout)."""

from __future__ import annotations

import json
import statistics
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
                "--repeat",
                "2",
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
    # two rounds, each with its own forms, ledger and ratios; the figures are their medians
    rounds = figures["rounds"]
    assert len(rounds) == 2
    assert len(list((run / "forms-1").glob("*.xlsx"))) == n
    assert (run / "ledger-1.sqlite").exists()
    for key in ("collect_per_s", "generate_per_s", "collect_ratio", "generate_ratio"):
        assert figures[key] == statistics.median(r[key] for r in rounds)
    for r in rounds:
        assert r["collect_ratio"] == r["collect_per_s"] / r["openpyxl_collect_per_s"]
    assert "medians of 2 rounds" in out


@pytest.mark.parametrize(
    ("generate", "disk", "hint"),
    [(2_000.0, 2_500.0, True), (2_000.0, 25_000.0, False), (6_000.0, 2_500.0, False)],
)
def test_report_says_when_the_disk_is_the_limit(
    capsys: pytest.CaptureFixture[str], generate: float, disk: float, hint: bool
) -> None:
    """Generate below its target while the disk alone is slow (files made just after
    an earlier run deleted its files, on ext4): the report says why it may be and what
    to do; not when the disk is quick, or generate met its target."""
    figures = {
        "n": 2000,
        "template": "t",
        "cpus": 2,
        "workers": 2,
        "python": "CPython 3.11",
        "generate_per_s": generate,
        "generate_s": 1.0,
        "openpyxl_generate_per_s": 20.0,
        "generate_ratio": 100.0,
        "collect_per_s": 1600.0,
        "collect_s": 1.25,
        "openpyxl_collect_per_s": 35.0,
        "collect_ratio": 45.7,
        "collect_check_s": 1.2,
        "generate_cpu_ms_per_form": 0.3,
        "collect_cpu_ms_per_form": 1.1,
        "summary_s": 2.0,
        "collect_with_summary_per_s": 600.0,
        "disk_files_per_s": disk,
        "counts": {"accepted": 1900, "warning": 40, "rejected": 60},
        "fill_s": 1.0,
        "peak_rss_main_mb": 70.0,
        "peak_rss_worker_mb": 58.0,
    }
    bench.report(figures, [{}])
    out = capsys.readouterr().out
    assert f"{disk:.0f} files/s" in out
    assert ("creating files is slow on this disk now" in out) is hint
    assert ("--dir /dev/shm" in out) is hint
