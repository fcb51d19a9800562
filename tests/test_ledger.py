"""The SQLite ledger: idempotent by (sha256, period), history across periods."""

from __future__ import annotations

import datetime as dt
import decimal
import sqlite3
from decimal import Decimal
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kpi_excel import ledger as ledger_mod
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


# -- version 2: the scores table without a rowid; version 1 upgraded when opened ----------


def _scores_sql(con: sqlite3.Connection) -> str:
    return con.execute("SELECT sql FROM sqlite_master WHERE name = 'scores'").fetchone()[0]


def _tables(con: sqlite3.Connection) -> dict[str, list[tuple[object, ...]]]:
    return {
        t: con.execute(f"SELECT * FROM {t} ORDER BY 1, 2, 3").fetchall()  # noqa: S608
        for t in ("files", "sources", "scores", "anomalies")
    }


def test_a_new_ledger_keeps_scores_without_a_rowid(tmp_path: Path) -> None:
    db = tmp_path / "ledger.sqlite"
    with Ledger(db) as led:
        led.record([_row("a" * 64, "2026-11", "E001", "121.95")])
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
    assert "WITHOUT ROWID" in _scores_sql(con)
    con.close()


def test_a_new_ledger_has_16k_pages_and_an_existing_one_keeps_its_own(tmp_path: Path) -> None:
    """A new ledger is made with 16 KB pages; one made before with SQLite's 4 KB pages
    keeps them (SQLite fixes the size with the first table) and is written as before."""
    new, old = tmp_path / "new.sqlite", tmp_path / "old.sqlite"
    when = dt.datetime(2026, 11, 30, 9, 0)
    with Ledger(new) as led:
        led.record([_row("a" * 64, "2026-11", "E001", "121.95")], now=when)
    con = sqlite3.connect(old)
    con.execute("PRAGMA page_size = 4096")
    con.execute("CREATE TABLE t (x)")  # the size is set now
    con.execute("DROP TABLE t")
    con.commit()
    con.close()
    with Ledger(old) as led:
        led.record([_row("a" * 64, "2026-11", "E001", "121.95")], now=when)
    sizes = {}
    for db in (new, old):
        con = sqlite3.connect(db)
        sizes[db.stem] = con.execute("PRAGMA page_size").fetchone()[0]
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        con.close()
    assert sizes == {"new": 16384, "old": 4096}
    assert _dump(new) == _dump(old)


def test_a_version_1_ledger_is_upgraded_with_every_row(tmp_path: Path) -> None:
    from kpi_excel import ledger as ledger_mod

    db = tmp_path / "ledger.sqlite"
    when = dt.datetime(2026, 11, 30, 9, 0)
    rows = [_row("a" * 64, "2026-11", "E001", "121.95"), _row("b" * 64, "2026-11", "E002", "88")]
    with Ledger(db) as led:
        led.record(rows, now=when)
    # made a version 1 ledger: its scores table with a rowid, as version 1 wrote it
    v1 = ledger_mod._SCORES_V2.replace(") WITHOUT ROWID;", ");")
    assert v1 != ledger_mod._SCORES_V2
    con = sqlite3.connect(db)
    con.executescript(
        f"CREATE TABLE s1 AS SELECT * FROM scores; DROP TABLE scores; {v1}"
        " INSERT INTO scores SELECT * FROM s1; DROP TABLE s1; PRAGMA user_version = 1;"
    )
    assert "WITHOUT ROWID" not in _scores_sql(con)
    before = _tables(con)
    con.close()

    with Ledger(db) as led:  # upgraded on opening
        assert led.counts() == {"files": 2, "sources": 2, "scores": 6, "anomalies": 2}
        led.record([_row("c" * 64, "2026-12", "E001", "100.50")], now=when)
        trend = [(t.period, t.employee_id, t.total) for t in led.trend()]
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA user_version").fetchone()[0] == 2
    assert "WITHOUT ROWID" in _scores_sql(con)
    after = _tables(con)
    con.close()
    # every version 1 row is there as it was, and the new collection beside them
    for table, was in before.items():
        assert [r for r in after[table] if r[0] != "c" * 64] == was, table
    assert len(after["scores"]) == 9
    assert trend == [
        ("2026-11", "E001", Decimal("121.95")),
        ("2026-11", "E002", Decimal("88")),
        ("2026-12", "E001", Decimal("100.50")),
    ]
    with Ledger(db):  # opening again changes nothing
        pass
    con = sqlite3.connect(db)
    assert _tables(con) == after
    con.close()


def test_a_failed_upgrade_leaves_version_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kpi_excel import ledger as ledger_mod

    db = tmp_path / "ledger.sqlite"
    with Ledger(db) as led:
        led.record([_row("a" * 64, "2026-11", "E001", "121.95")])
    con = sqlite3.connect(db)
    con.execute("PRAGMA user_version = 1")
    con.commit()
    before = _tables(con)
    con.close()
    # a statement that fails half-way through the upgrade (the copy)
    monkeypatch.setattr(ledger_mod, "_SCORES_V2", "CREATE TABLE IF NOT EXISTS scores (x);")
    with pytest.raises(KpiExcelError, match="升级.*台账未改动"):
        Ledger(db)
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA user_version").fetchone()[0] == 1
    assert _tables(con) == before
    con.close()


def test_batched_record_equals_row_by_row(tmp_path: Path) -> None:
    """Ledger.record writes a collection kind by kind when the order of its rows cannot
    matter, row by row (the reference) when it can: on random collections written over
    an existing ledger, both give the very same tables, and the batch is taken exactly
    when it is safe."""
    import random

    from kpi_excel import ledger as ledger_mod

    rng = random.Random(7)
    shas = [c * 64 for c in "abcdefgh"]
    people = ["E001", "E002", "E003", ""]
    first = [_row(shas[i], "2026-11", people[i % 3], "80") for i in range(4)]
    batched_seen = 0
    for case in range(60):
        rows = []
        for _ in range(rng.randint(1, 6)):
            r = _row(
                rng.choice(shas),
                rng.choice(["2026-11", "2026-12", ""]),
                rng.choice(people),
                rng.choice(["90", "95.5"]),
                counted=rng.random() < 0.6,
                status=rng.choice(["accepted", "rejected"]),
            )
            r.anomalies = r.anomalies[: rng.randint(0, 1)]
            rows.append(r)
        free = ledger_mod._order_free(rows)
        batched_seen += free
        dumps = []
        for how in ("_record_batched", "_record_in_order"):
            db = tmp_path / f"{case}{how}.sqlite"
            with Ledger(db) as led:
                led.record(first, now=dt.datetime(2026, 12, 1, 9, 0))
                seen = "2026-12-02T09:00:00"
                with led.conn:
                    getattr(led, how)(rows, seen)
            dumps.append(_dump(db))
        if free:
            assert dumps[0] == dumps[1], rows
        # what record itself does is the in-order result, whichever way it takes
        db = tmp_path / f"{case}.sqlite"
        with Ledger(db) as led:
            led.record(first, now=dt.datetime(2026, 12, 1, 9, 0))
            led.record(rows, now=dt.datetime(2026, 12, 2, 9, 0))
        assert _dump(db) == dumps[1]
    assert 10 < batched_seen < 60  # both ways were taken


def test_order_free() -> None:
    from kpi_excel.ledger import _order_free

    a, b = _row("a" * 64, "2026-11", "E001", "90"), _row("b" * 64, "2026-11", "E002", "90")
    assert _order_free([a, b])
    assert not _order_free([a, _row("a" * 64, "2026-11", "E009", "90")])  # the same file twice
    # another return of a counted person: which one stays counted depends on the order
    assert not _order_free([a, _row("c" * 64, "2026-11", "E001", "95", counted=False)])
    assert _order_free([a, _row("c" * 64, "2026-12", "E001", "95")])  # another period
    assert _order_free(
        [_row("c" * 64, "2026-11", "E001", "95", counted=False), b]
    )  # nobody counted twice


def test_score_rows_in_one_call_equal_one_at_a_time() -> None:
    """ScoreRow.rows (a form's rows in one call, Decimals inline) gives what ScoreRow.of
    gives, for every kind of value a computed cell holds."""
    values: dict[str, object] = {
        "a": Decimal("67.60"),
        "b": Decimal("-0"),
        "c": Decimal("1E+3"),
        "d": Decimal("0.000"),
        "e": Decimal("NaN"),
        "f": "A",
        "g": None,
        "h": True,
        "i": 3,
        "j": 2.5,
        "k": Decimal("-12.3450"),
    }
    heads = [(name, "score", "ind", "sec") for name in [*values, "missing"]]
    want = [ScoreRow.of(*head, values.get(head[0])) for head in heads]
    for c_part in (ledger_mod._C, None):  # the C loop (where built) and the Python one
        with mock.patch.object(ledger_mod, "_C", c_part):
            got = ScoreRow.rows(heads, values)
        assert [repr(tuple(r)) for r in got] == [repr(tuple(r)) for r in want]
        assert all(type(r) is ScoreRow for r in got)


@settings(max_examples=1500, deadline=None)
@given(
    values=st.lists(
        st.decimals(allow_nan=False, allow_infinity=False, places=2)
        | st.decimals()
        | st.integers(-(10**40), 10**40).map(Decimal)
        | st.tuples(st.integers(-(10**12), 10**12), st.integers(-12, 12)).map(
            lambda t: Decimal(t[0]).scaleb(t[1]))
        | st.sampled_from([Decimal("-0.00"), Decimal("0E-7"), Decimal("1E+2"), Decimal("sNaN"),
                           Decimal("-Infinity"), Decimal("NaN12"), Decimal("100.000")]),
        max_size=8,
    ),
    prec=st.sampled_from([None, 1, 3, 6, 12, 28, 40]),
    emax=st.sampled_from([None, 5, 30, 999999]),
)  # fmt: skip
def test_score_rows_of_any_decimal_in_any_context(
    values: list[Decimal], prec: int | None, emax: int | None
) -> None:
    """ScoreRow.rows works a Decimal's text and number out from its own text when
    normalize() cannot round it: the same as ScoreRow.of for any value, in any
    decimal context (precision, exponent limits), including the values it errs on."""
    heads = [(f"c{i}", "score", None, None) for i in range(len(values))]
    given_values = {h[0]: v for h, v in zip(heads, values, strict=True)}
    with decimal.localcontext() as ctx:
        if prec is not None:
            ctx.prec = prec
        if emax is not None:
            ctx.Emax, ctx.Emin = emax, -emax

        def outcome(fn: object) -> tuple[str, str]:
            try:
                return "ok", repr([tuple(r) for r in fn()])  # type: ignore[operator]
            except Exception as e:  # the kind of any failure
                return "raised", type(e).__name__

        got = outcome(lambda: ScoreRow.rows(heads, given_values))  # in C where built
        with mock.patch.object(ledger_mod, "_C", None):
            python = outcome(lambda: ScoreRow.rows(heads, given_values))
        want = outcome(lambda: [ScoreRow.of(*h, given_values[h[0]]) for h in heads])
    assert got == python == want


def test_score_table_rows_as_the_ledger_makes_them() -> None:
    """The rows a worker hands over for the scores table (collect._score_table_rows)
    are those the ledger makes from the scores itself, for every kind of value."""
    from kpi_excel.collect import _ledger_scores, _score_table_rows

    scores = [
        ScoreRow.of("total", "total", None, None, Decimal("88.50")),
        ScoreRow.of("grade", "grade", None, None, "A"),
        ScoreRow.of("odd", "sys", "x", "s", "坏\ud800字"),  # a lone surrogate: replaced
        ScoreRow("raw", "score", "x", "s", Decimal("1.50")),  # text not worked out
        ScoreRow("none", "score", "x", "s", None),
        ScoreRow.of("flag", "sys", None, None, True),
        ScoreRow.of("n", "sys", None, None, 2.5),
    ]
    want = [("s" * 64, "2026-11", *s.params()) for s in _ledger_scores(scores)]
    assert _score_table_rows("s" * 64, "2026-11", scores) == want
    assert want[2][6] == "坏\ufffd字"  # (the case is meaningful)


def test_storable_text() -> None:
    """collect._storable: lone surrogates become U+FFFD, everything else is kept (the
    very object: most text has none)."""
    from kpi_excel.collect import _SURROGATE, _storable

    for v in ["", "abc", "张三", "a\ud800b", "\udfff", "中\udc80文\ud83d", "😀", "x" * 300]:
        got = _storable(v)
        assert got == _SURROGATE.sub("\ufffd", v)
        if _SURROGATE.search(v) is None:
            assert got is v
    for v in (None, 3, Decimal("1.5"), True):
        assert _storable(v) is v
