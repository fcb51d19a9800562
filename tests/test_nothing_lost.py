"""Nothing is lost: every file given is accounted for, outputs are replaced only
when complete, and inputs are never touched.

The property: for any mix of good, bad and lock files under any names,

    files in = accepted + accepted with warnings + rejected + skipped (lock/system files)

each file appears once in the summary (sheet 文件) and in the ledger (``sources``),
the inputs are byte-identical afterwards, and the run stays within a generous time
bound (per-file work is capped by :class:`kpi_excel.read.Limits`).
"""

from __future__ import annotations

import sqlite3
import tempfile
import time
from pathlib import Path

import openpyxl
import pytest
from hostile import CORPUS, Forms, make_forms, tree_digest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_collect import G, fill

from kpi_excel import ledger as ledger_mod
from kpi_excel import summary as summary_mod
from kpi_excel.collect import collect


@pytest.fixture(scope="module")
def forms(tmp_path_factory: pytest.TempPathFactory) -> Forms:
    return make_forms(tmp_path_factory.mktemp("forms"))


@pytest.fixture(scope="module")
def pool(forms: Forms, tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, bytes, bool]]:
    """(kind, bytes, is a lock file) to draw from: good forms of three employees, a
    stale one, a rejected one, and every case of the hostile corpus."""
    root = tmp_path_factory.mktemp("pool")
    out = [(f"good {e}", data, False) for e, data in forms.goods.items()]
    stale = fill(forms.blank["E004"], root / "stale.xlsx", G, recalc=False)
    out.append(("stale E004", stale.read_bytes(), False))
    bad = fill(forms.blank["E005"], root / "bad.xlsx", {**G, "in_training_done": "约3"})
    out.append(("text E005", bad.read_bytes(), False))
    for case in CORPUS:
        out.append((case.name, case.build(forms.goods[case.employee]), case.status == "skipped"))
    return out


#: pieces of file names people produce: CJK, full-width, emoji, RTL text, combining
#: marks (NFD), spaces, brackets
NAME_CHARS = st.sampled_from(
    list("张三李四考核表（副本）() _-—.，")
    + ["１", "Ａ", "👍", "🏽", "\u0645", "\u05d0", "e\u0301", "\u3000", "#", "%", "&", "'"]
)
SUFFIXES = st.sampled_from([".xlsx", ".xlsx", ".XLSX", ".xlsm", ".xls", ".csv", ""])


@settings(
    max_examples=25,
    deadline=None,
    database=None,  # nothing written into the source tree
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    picks=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=10_000),
            st.lists(NAME_CHARS, max_size=12).map("".join),
            SUFFIXES,
        ),
        min_size=3,
        max_size=16,
    )
)
def test_every_file_is_accounted_for(pool, picks) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "in"
        (d / "子文件夹").mkdir(parents=True)
        written = []
        for k, (index, stem, suffix) in enumerate(picks):
            kind, data, lock = pool[index % len(pool)]
            name = f"{k:02d}_{stem}{suffix}"
            if lock:
                name = f"~${name}"
            folder = d / "子文件夹" if k % 3 == 2 else d
            (folder / name).write_bytes(data)
            written.append((str(folder / name), kind, lock))
        before = tree_digest(d)
        out = Path(tmp) / "out" / "汇总.xlsx"
        t0 = time.perf_counter()
        coll = collect([d], out=out)
        seconds = time.perf_counter() - t0

        assert tree_digest(d) == before  # inputs untouched, nothing added beside them
        c = coll.counts()
        assert c["files"] + c["skipped"] == len(written)
        assert c["accepted"] + c["warning"] + c["rejected"] == c["files"]
        results = {f.path: f for f in coll.files}
        skipped = dict(coll.skipped)
        for path, _kind, lock in written:
            if lock:
                assert "锁文件" in skipped[path]
            else:
                f = results[path]
                assert f.status in ("accepted", "warning", "rejected")
                if f.status == "rejected":
                    assert f.reason
        assert seconds < 60, seconds

        ws = openpyxl.load_workbook(out, read_only=True)["文件"]
        listed = [r[0] for r in ws.iter_rows(min_row=2, values_only=True)]
        assert sorted(listed) == sorted(p for p, _k, _l in written)
        con = sqlite3.connect(out.with_suffix(".sqlite"))
        sources = {p for (p,) in con.execute("SELECT path FROM sources")}
        con.close()
        assert sources == set(results)


# ------------------------------------------------------------- atomic outputs


def _dump(db: Path) -> dict[str, list]:
    con = sqlite3.connect(db)
    try:
        return {
            t: sorted(con.execute(f"SELECT * FROM {t}").fetchall(), key=repr)  # noqa: S608
            for t in ("files", "sources", "scores", "anomalies")
        }
    finally:
        con.close()


def test_a_crash_while_writing_the_summary_keeps_the_old_one(
    forms: Forms, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = tmp_path / "in"
    d.mkdir()
    (d / "张三.xlsx").write_bytes(forms.goods["E001"])
    out = tmp_path / "out" / "s.xlsx"
    collect([d], out=out)
    old = out.read_bytes()
    (d / "王五.xlsx").write_bytes(forms.goods["E002"])

    def boom(*_a, **_k):
        raise RuntimeError("disk full")  # midway: the first sheets are already written

    monkeypatch.setattr(summary_mod, "_write_issues", boom)
    with pytest.raises(RuntimeError):
        collect([d], out=out)
    assert out.read_bytes() == old
    assert sorted(p.name for p in out.parent.iterdir()) == ["s.sqlite", "s.xlsx"]  # no temp left


def test_a_crash_while_writing_the_ledger_keeps_the_old_one(
    forms: Forms, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = tmp_path / "in"
    d.mkdir()
    (d / "张三.xlsx").write_bytes(forms.goods["E001"])
    out = tmp_path / "out" / "s.xlsx"
    collect([d], out=out)
    db = out.with_suffix(".sqlite")
    before, old_summary = _dump(db), out.read_bytes()
    (d / "王五.xlsx").write_bytes(forms.goods["E002"])
    (d / "赵六.xlsx").write_bytes(forms.goods["E003"])
    calls = {"n": 0}
    real = ledger_mod.Ledger._write_rows

    def flaky(self: ledger_mod.Ledger, key: tuple[str, str], rows: list[tuple]) -> None:
        calls["n"] += 1
        if calls["n"] == 2:  # in the middle of the second file's scores
            self.conn.execute("DELETE FROM scores WHERE sha256 = ? AND period = ?", key)
            raise OSError("the disk went away")
        real(self, key, rows)

    monkeypatch.setattr(ledger_mod.Ledger, "_write_rows", flaky)
    with pytest.raises(OSError):
        collect([d], out=out)
    assert calls["n"] == 2
    assert _dump(db) == before  # one transaction: all or nothing
    assert out.read_bytes() == old_summary


def test_outputs_inside_the_input_folder_are_not_inputs(forms: Forms, tmp_path: Path) -> None:
    """A summary written into the folder it collects, a temp file left by a killed run,
    and the ledger's journal are skipped with a reason, never checked as returns."""
    d = tmp_path / "in"
    d.mkdir()
    (d / "张三.xlsx").write_bytes(forms.goods["E001"])
    collect([d], out=d / "汇总.xlsx")
    (d / ".汇总.4242.tmp.xlsx").write_bytes(b"half a summary")
    (d / "汇总.sqlite-journal").write_bytes(b"\xd9\xd5\x05\xf9\x20\xa1\x63\xd7")
    coll = collect([d], out=d / "汇总.xlsx")
    assert [Path(f.path).name for f in coll.files] == ["张三.xlsx"]
    skipped = {Path(p).name: why for p, why in coll.skipped}
    assert set(skipped) == {
        "汇总.xlsx",
        "汇总.sqlite",
        ".汇总.4242.tmp.xlsx",
        "汇总.sqlite-journal",
    }


def test_text_no_database_can_store_is_stored_replaced(tmp_path: Path) -> None:
    """A lone surrogate smuggled into a message by a reader must not fail the ledger
    (SQLite stores UTF-8) and with it the whole run."""
    from kpi_excel.collect import FileResult, _ledger_rows
    from kpi_excel.ledger import Ledger

    f = FileResult("in/\ud800.xlsx", 10, 0.0, sha256="ab" * 32)
    f.add("bad", "error", "公式被改为 =IF(\ud800)", "total", "表!M13")
    f.settle()
    with Ledger(tmp_path / "l.sqlite") as led:
        led.record(_ledger_rows([f]))
    con = sqlite3.connect(tmp_path / "l.sqlite")
    assert con.execute("SELECT message FROM anomalies").fetchone() == ("公式被改为 =IF(\ufffd)",)
    con.close()
