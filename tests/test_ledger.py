"""The SQLite ledger: idempotent by (sha256, period), history across periods."""

from __future__ import annotations

import datetime as dt
import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest

from kpi_excel.errors import KpiExcelError
from kpi_excel.ledger import (
    SCHEMA_VERSION,
    AnomalyRow,
    FileRow,
    Ledger,
    ScoreRow,
    SourceRow,
    default_path,
)


def _row(
    sha: str, period: str, eid: str, total: str, *, counted: bool = True, status: str = "accepted"
) -> FileRow:
    return FileRow(
        sha256=sha,
        period=period,
        status=status,
        reason="" if status != "rejected" else "公式被覆盖",
        employee_id=eid,
        name=f"员工{eid}",
        department="客服部",
        template_id="cs_manager_monthly_kpi",
        template_version="1.0",
        total=Decimal(total),
        total_in_file=Decimal(total),
        grade="A",
        counted=counted,
        sources=[SourceRow(f"returned/{eid}.xlsx", 1234, 1_790_000_000.0, status)],
        scores=[
            ScoreRow.of("total", "total", None, None, Decimal(total)),
            ScoreRow.of("grade", "grade", None, None, "A"),
            ScoreRow("score_sales_rate", "score", "sales_rate", "sales_mgmt", Decimal("133.00")),
        ],
        anomalies=[
            AnomalyRow(
                f"returned/{eid}.xlsx", "in_x", "表!J6", "text_normalised", "warning", "已按 80 计"
            )
        ],
    )


def _dump(db: Path) -> dict[str, list[tuple]]:
    con = sqlite3.connect(db)
    try:
        return {
            t: sorted(con.execute(f"SELECT * FROM {t}").fetchall(), key=repr)
            for t in ("files", "sources", "scores", "anomalies")
        }
    finally:
        con.close()


def test_default_path_is_beside_the_summary() -> None:
    assert default_path(Path("out/summary.xlsx")) == Path("out/summary.sqlite")


def test_recording_twice_changes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "ledger.sqlite"
    rows = [_row("a" * 64, "2026-11", "E001", "121.95"), _row("b" * 64, "2026-11", "E002", "57.60")]
    with Ledger(db) as led:
        led.record(rows, now=dt.datetime(2026, 12, 1, 9, 0))
        first = led.counts()
    before = _dump(db)
    with Ledger(db) as led:
        led.record(rows, now=dt.datetime(2026, 12, 2, 9, 0))  # a day later: same rows
        assert led.counts() == first
    assert _dump(db) == before
    assert first == {"files": 2, "sources": 2, "scores": 6, "anomalies": 2}


def test_contents(tmp_path: Path) -> None:
    db = tmp_path / "ledger.sqlite"
    with Ledger(db) as led:
        led.record(
            [_row("a" * 64, "2026-11", "E001", "121.95")], now=dt.datetime(2026, 12, 1, 9, 0)
        )
    con = sqlite3.connect(db)
    files = con.execute(
        "SELECT sha256, period, status, employee_id, total, counted, first_seen FROM files"
    ).fetchall()
    assert files == [("a" * 64, "2026-11", "accepted", "E001", "121.95", 1, "2026-12-01T09:00:00")]
    scores = dict(con.execute("SELECT cell, value FROM scores").fetchall())
    assert scores == {"total": "121.95", "grade": "A", "score_sales_rate": "133"}
    number = con.execute("SELECT number FROM scores WHERE cell = 'total'").fetchone()[0]
    assert number == pytest.approx(121.95)
    src = con.execute("SELECT path, size, status FROM sources").fetchall()
    assert src == [("returned/E001.xlsx", 1234, "accepted")]
    an = con.execute("SELECT seq, cell, address, kind, severity FROM anomalies").fetchall()
    assert an == [(1, "in_x", "表!J6", "text_normalised", "warning")]
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    con.close()


def test_a_new_period_adds_history(tmp_path: Path) -> None:
    db = tmp_path / "ledger.sqlite"
    with Ledger(db) as led:
        led.record([_row("a" * 64, "2026-11", "E001", "121.95")])
        led.record([_row("c" * 64, "2026-12", "E001", "100.50")])
        assert led.periods() == ["2026-11", "2026-12"]
        trend = [(t.period, t.employee_id, t.total) for t in led.trend()]
    assert trend == [("2026-11", "E001", Decimal("121.95")), ("2026-12", "E001", Decimal("100.50"))]


def test_a_newer_return_replaces_the_counted_one(tmp_path: Path) -> None:
    db = tmp_path / "ledger.sqlite"
    with Ledger(db) as led:
        led.record([_row("a" * 64, "2026-11", "E001", "90")])
        led.record([_row("d" * 64, "2026-11", "E001", "95")])  # collected later, same person
        trend = [(t.period, t.total) for t in led.trend()]
        counted = dict(led.conn.execute("SELECT sha256, counted FROM files").fetchall())
    assert trend == [("2026-11", Decimal("95"))]
    assert counted == {"a" * 64: 0, "d" * 64: 1}


def test_rejected_files_are_kept_but_not_in_the_trend(tmp_path: Path) -> None:
    db = tmp_path / "ledger.sqlite"
    with Ledger(db) as led:
        led.record([_row("e" * 64, "2026-11", "E003", "80", status="rejected")])
        assert led.counts()["files"] == 1
        assert led.trend() == []


def test_unknown_schema_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "ledger.sqlite"
    con = sqlite3.connect(db)
    con.execute("PRAGMA user_version = 99")
    con.close()
    with pytest.raises(KpiExcelError, match="格式版本"):
        Ledger(db)
