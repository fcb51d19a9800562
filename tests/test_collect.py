"""Collect returned forms end to end, on forms made by the real generator.

Forms are generated for a small roster, filled with openpyxl (input values by defined
name; cached values of the formula cells recomputed as the sheet would, then patched
into the XML as Excel would have saved them), and given deliberate problems: text in
a number cell, an overwritten formula, an edited weight, a duplicate return, a wrong
period, a file that was never recalculated, a missing employee, lock/system files and
unreadable files. Expected scores are worked out by hand in the comments.

Template ``cs_manager_monthly_kpi`` (targets from its defaults: sales plan 100 万元,
satisfaction 4.6, 4 trainings, 12 months of service), with the "good" inputs ``G``:

==================  ============================================  ======  ======  =======
indicator           input                                          score   weight  weighted
==================  ============================================  ======  ======  =======
销售收入计划完成率    110/100 = 110%: 100 + 10 x 3.3                 133     65%     86.45
客户满意度评分        4.8 - 4.6 = 0.2: 100 + 0.2 x 50                110     5%      5.50
客户投诉处理及时性    1 late: 100 - 5                                95      5%      4.75
客户投诉处理解决率    49/50 = 98% -> tier >=98%                       100     15%     15.00
培训计划完成率        4 planned, 3 done: 100 - 5                     95      5%      4.75
部门员工平均服务年限  14 - 12 = 2: 100 + 2 x 5                        110     5%      5.50
==================  ============================================  ======  ======  =======

total 121.95 -> grade S (>=120), coefficient 1.5. The other five items always add up
to 35.50, so a total is ``sales weighted + 35.50`` when only the sales figure changes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import shutil
import sqlite3
import zipfile
from decimal import Decimal
from pathlib import Path

import openpyxl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kpi_excel.collect import collect, collect_command, discover
from kpi_excel.generate import generate_command
from kpi_excel.meta import read_meta
from kpi_excel.read import open_book
from kpi_excel.recalc import patch_cached
from kpi_excel.rules.tree import SheetError
from kpi_excel.score import compile_form
from kpi_excel.spec.load import load_form_text

TEMPLATE = "cs_manager_monthly_kpi"

G = {
    "in_sales_rate_actual": 110,
    "in_satisfaction_actual": 4.8,
    "in_complaint_timely_late": 1,
    "in_complaint_resolved_total": 50,
    "in_complaint_resolved_resolved": 49,
    "in_training_done": 3,
    "in_service_years_actual": 14,
}

ROSTER = """工号,姓名,部门,岗位,考核人
E001,张三,客服部,客服经理,李四
E002,王五,客服部,客服经理,李四
E003,赵六,销售部,客服经理,钱七
E004,钱七,销售部,客服经理,李四
E005,孙八,销售部,客服经理,李四
E006,周九,客服部,客服经理,李四
E007,吴十,销售部,客服经理,李四
E008,郑一,客服部,客服经理,李四
"""


# ----------------------------------------------------------------------------- helpers


class Text(str):
    """A value typed as text (a leading apostrophe in Excel): never a formula."""


def _sheet_value(v: object) -> object:
    if v is None or isinstance(v, bool):
        return v
    if isinstance(v, int | float):
        return Decimal(repr(v)) if isinstance(v, float) else Decimal(v)
    return str(v)


def fill(
    src: Path,
    dst: Path,
    values: dict[str, object],
    edits: dict[str, object] | None = None,
    recalc: bool = True,
    mtime: float | None = None,
    computed: dict[str, object] | None = None,
    sign: bool = True,
) -> Path:
    """Fill a generated form as a person would, and save it as a spreadsheet would.

    With ``sign`` every signer signs under the form (the reviewee with their own
    name) and dates it, unless ``values`` says otherwise.

    ``values`` by defined name; ``edits`` by coordinate (to damage locked cells or
    formulas). With ``recalc`` the formula cells get the values the sheet computes
    (overwritten cells keep what was typed over them, and their dependents follow);
    without it they have no cached values, like a file filled by a tool that never
    recalculates. ``computed`` gives the results of formulas typed into inputs.
    """
    wb = openpyxl.load_workbook(src)
    meta = read_meta(wb)
    cf = compile_form(load_form_text(meta["template_yaml"]))
    ws = wb[meta["sheet"]]
    where = {}
    for name, dn in wb.defined_names.items():
        for _sheet, ref in dn.destinations:
            where[name] = ref.replace("$", "")
    if sign:
        values = {**_signatures(meta, where), **values}
    for name, v in values.items():
        ws[where[name]] = v
        if isinstance(v, Text):  # typed as text even if it looks like a formula
            ws[where[name]].data_type = "s"
    for coord, v in (edits or {}).items():
        ws[coord] = v
    buf = io.BytesIO()
    wb.save(buf)
    data = buf.getvalue()
    if recalc:
        env: dict[str, object] = {i.name: _sheet_value(ws[where[i.name]].value) for i in cf.inputs}
        cached = {}
        for name, v in (computed or {}).items():
            env[name] = _sheet_value(v)
            cached[where[name]] = env[name]
        for cell in cf.cells:
            cur = ws[where[cell.name]].value
            if isinstance(cur, str) and cur.startswith("="):
                try:
                    env[cell.name] = cell.expr.evaluate(env)  # type: ignore[arg-type]
                except SheetError as e:
                    env[cell.name] = e.code
                cached[where[cell.name]] = env[cell.name]
            else:
                env[cell.name] = _sheet_value(cur)
        book = open_book(data, str(dst))
        part = book.sheet(meta["sheet"]).part  # type: ignore[union-attr]
        book.close()
        data = patch_cached(data, part, cached)  # type: ignore[arg-type]
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(data)
    if mtime is not None:
        os.utime(dst, (mtime, mtime))
    return dst


def _signatures(meta: dict[str, str], where: dict[str, str]) -> dict[str, object]:
    form = load_form_text(meta["template_yaml"])
    start = dt.date.fromisoformat(meta["generated_at"][:10])
    day = min(start + dt.timedelta(days=20), dt.date.today())
    out: dict[str, object] = {}
    for n, who in enumerate(form.signatures, start=1):
        if f"sig_{n}" in where:
            signer = meta["name"] if who.startswith(("被考核", "受考核")) else "审核人"
            out[f"sig_{n}"] = Text(signer)  # typed as text, whatever the name looks like
            out[f"sig_{n}_date"] = day
    return out


def signed(name: str, day: dt.date = dt.date(2026, 11, 21)) -> dict[str, object]:
    """What a reviewee and a reviewer type under a cs_manager_monthly_kpi form."""
    when = dt.datetime.combine(day, dt.time())
    return {"sig_1": name, "sig_1_date": when, "sig_2": "审核人", "sig_2_date": when}


T0 = 1_790_000_000.0  # a fixed modification time; later returns get later times


@pytest.fixture(scope="module")
def blank(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Blank forms for everyone, for 2026-11, plus E001 for 2026-10 and 2026-12."""
    root = tmp_path_factory.mktemp("gen")
    roster = root / "roster.csv"
    roster.write_text(ROSTER, encoding="utf-8")
    out: dict[str, Path] = {"roster": roster}
    for p in generate_command(TEMPLATE, roster, "2026-11", root / "2026-11"):
        out[p.stem.rsplit("_", 1)[-1]] = p
    for period in ("2026-10", "2026-12"):
        for p in generate_command(TEMPLATE, roster, period, root / period):
            out[f"{p.stem.rsplit('_', 1)[-1]}@{period}"] = p
    return out


@pytest.fixture(scope="module")
def returned(blank: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of returned files, one deliberate problem each."""
    d = tmp_path_factory.mktemp("returned")
    # E001: good -> 121.95 S
    fill(blank["E001"], d / "张三.xlsx", G, mtime=T0)
    # E002: 八十 typed for the sales figure: accepted, read as 80 with a warning;
    #       80% -> 100 - 20 x 3.3 = 34 -> 22.10; total 22.10 + 35.50 = 57.60 -> D
    fill(blank["E002"], d / "王五.xlsx", {**G, "in_sales_rate_actual": "八十"}, mtime=T0)
    # E003: weight of 客户满意度评分 (E7, locked) edited from 5% to 10%: rejected
    fill(blank["E003"], d / "赵六.xlsx", G, edits={"E7": 0.1}, mtime=T0)
    # E004: total (M13) overwritten with 95: rejected
    fill(blank["E004"], d / "钱七.xlsx", G, edits={"M13": 95}, mtime=T0)
    # E005: two returns; the newer counts.
    #       older: sales 100 -> 100 -> 65.00; total 100.50
    #       newer: sales 105 -> 116.5 -> x 65% = 75.725 -> 75.73; total 111.23 -> A
    fill(blank["E005"], d / "sub" / "孙八.xlsx", {**G, "in_sales_rate_actual": 100}, mtime=T0)
    fill(
        blank["E005"],
        d / "sub" / "孙八_改.xlsx",
        {**G, "in_sales_rate_actual": 105},
        mtime=T0 + 3600,
    )
    # E006: no return at all (missing)
    # E007: filled but never recalculated: accepted with a warning, recomputed.
    #       sales 95 -> 100 - 5 x 3.3 = 83.5 -> 54.275 -> 54.28; satisfaction 4.6 -> 100
    #       -> 5.00; 0 late -> 100 -> 5.00; 45/50 = 90% -> 80 -> 12.00; 4 trainings -> 100
    #       -> 5.00; 12 months -> 100 -> 5.00; total 86.28 -> B (>=85), coefficient 1.0
    e7 = {
        "in_sales_rate_actual": 95,
        "in_satisfaction_actual": 4.6,
        "in_complaint_timely_late": 0,
        "in_complaint_resolved_total": 50,
        "in_complaint_resolved_resolved": 45,
        "in_training_done": 4,
        "in_service_years_actual": 12,
    }
    fill(blank["E007"], d / "吴十.xlsx", e7, recalc=False, mtime=T0)
    # E008: "约1" in a count cell: rejected (not a precise number)
    fill(blank["E008"], d / "郑一.xlsx", {**G, "in_complaint_timely_late": "约1"}, mtime=T0)
    # E001 again, for the wrong period (2026-10): rejected
    fill(blank["E001@2026-10"], d / "张三_10月.xlsx", G, mtime=T0)
    # noise: lock and system files (skipped), a text file and a legacy .xls (rejected)
    (d / "~$张三.xlsx").write_bytes(b"\x00" * 165)
    (d / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (d / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (d / "__MACOSX").mkdir()
    (d / "__MACOSX" / "._张三.xlsx").write_bytes(b"\x00\x05\x16\x07")
    (d / "说明.txt").write_text("请查收", encoding="utf-8")
    (d / "旧表.xls").write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 504)
    return d


def _digests(folder: Path) -> dict[str, tuple[str, int]]:
    return {
        str(p): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in folder.rglob("*")
        if p.is_file()
    }


@pytest.fixture(scope="module")
def collected(returned: Path, blank: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("out") / "summary.xlsx"
    before = _digests(returned)
    coll = collect([returned], out=out, roster=blank["roster"], quota="S=25%,A=25%,B=25%")
    assert _digests(returned) == before  # inputs are never modified
    return coll, out


def _by_name(coll) -> dict[str, object]:
    return {Path(f.path).name: f for f in coll.files}


# ----------------------------------------------------------------------------- tests


def test_every_input_file_is_accounted_for(collected, returned: Path) -> None:
    coll, _out = collected
    files = _by_name(coll)
    assert sorted(files) == sorted(
        [
            "张三.xlsx",
            "王五.xlsx",
            "赵六.xlsx",
            "钱七.xlsx",
            "孙八.xlsx",
            "孙八_改.xlsx",
            "吴十.xlsx",
            "郑一.xlsx",
            "张三_10月.xlsx",
            "说明.txt",
            "旧表.xls",
        ]
    )
    assert {f.status for f in coll.files} <= {"accepted", "warning", "rejected"}
    for f in coll.files:
        if f.status == "rejected":
            assert f.reason, f.path
    skipped = {Path(p).name: why for p, why in coll.skipped}
    assert set(skipped) == {"~$张三.xlsx", ".DS_Store", "Thumbs.db", "__MACOSX"}
    assert "锁文件" in skipped["~$张三.xlsx"]


def test_statuses_and_reasons(collected) -> None:
    coll, _out = collected
    f = _by_name(coll)
    assert f["张三.xlsx"].status == "accepted"
    assert f["王五.xlsx"].status == "warning"
    assert [i.kind for i in f["王五.xlsx"].issues] == ["text_normalised"]
    assert f["吴十.xlsx"].status == "warning"
    assert [i.kind for i in f["吴十.xlsx"].issues] == ["stale_value"]
    kinds = {name: {i.kind for i in f[name].errors} for name in f if f[name].status == "rejected"}
    assert kinds == {
        "赵六.xlsx": {"locked_changed"},
        "钱七.xlsx": {"formula_overwritten"},
        "孙八.xlsx": {"duplicate"},
        "郑一.xlsx": {"text_in_number"},
        "张三_10月.xlsx": {"wrong_period"},
        "说明.txt": {"other"},
        "旧表.xls": {"ole"},
    }


def test_messages_name_the_file_and_the_cell(collected) -> None:
    coll, _out = collected
    f = _by_name(coll)
    weight = f["赵六.xlsx"].errors[0]
    assert weight.address.endswith("!E7")
    assert "客户满意度评分·权重" in weight.message
    assert "原为“5%”" in weight.message and "现为“10%”" in weight.message
    over = f["钱七.xlsx"].errors[0]
    assert over.cell == "total" and over.address.endswith("!M13")
    assert "公式被覆盖" in over.message and "95" in over.message
    stale = f["吴十.xlsx"].issues[0]
    assert stale.cell == "total" and "公式被覆盖或未重新计算" in stale.message
    text = f["郑一.xlsx"].errors[0]
    assert text.cell == "in_complaint_timely_late" and text.address.endswith("!J8")
    assert "约1" in text.message
    assert all(i.path == f["郑一.xlsx"].path for i in f["郑一.xlsx"].issues)


def test_recomputed_numbers_match_hand_computed(collected) -> None:
    coll, _out = collected
    f = _by_name(coll)
    expect = {
        "张三.xlsx": ("121.95", "S", "1.5"),
        "王五.xlsx": ("57.60", "D", "0.5"),
        "孙八_改.xlsx": ("111.23", "A", "1.2"),
        "吴十.xlsx": ("86.28", "B", "1"),
    }
    for name, (total, grade, coef) in expect.items():
        assert f[name].total == Decimal(total), name
        assert f[name].grade == grade, name
        assert f[name].coef == Decimal(coef), name
    # the stale file showed no total; the others showed the same number as recomputed
    assert f["吴十.xlsx"].total_in_file in (None, "")
    assert f["张三.xlsx"].total_in_file == Decimal("121.95")
    assert f["王五.xlsx"].total_in_file == ""  # the sheet gives no score for 八十
    lines = {ln.indicator: ln for ln in f["张三.xlsx"].lines}
    assert (lines["sales_rate"].final, lines["sales_rate"].weighted) == (
        Decimal(133),
        Decimal("86.45"),
    )
    assert lines["complaint_resolved"].final == 100
    assert lines["sales_rate"].weight == Decimal("0.65")


def test_duplicates_newest_counts(collected) -> None:
    coll, _out = collected
    f = _by_name(coll)
    assert f["孙八_改.xlsx"].counted and f["孙八_改.xlsx"].status == "accepted"
    assert not f["孙八.xlsx"].counted
    assert "孙八_改.xlsx" in f["孙八.xlsx"].reason


def test_missing_from_roster(collected) -> None:
    coll, _out = collected
    missing = {m["employee_id"]: m["reason"] for m in coll.missing}
    assert set(missing) == {"E003", "E004", "E006", "E008"}
    assert missing["E006"] == "未收到考核表"
    assert missing["E003"].startswith("已交但被退回")


def test_summary_sheets(collected) -> None:
    _coll, out = collected
    wb = openpyxl.load_workbook(out)
    ws = wb["汇总"]
    head = [c.value for c in ws[1]]
    rows = {
        r[0]: dict(zip(head, r, strict=False)) for r in ws.iter_rows(min_row=2, values_only=True)
    }
    # one row per employee with a return for the period (E006 sent none)
    assert set(rows) == {"E001", "E002", "E003", "E004", "E005", "E007", "E008"}
    assert rows["E001"]["重算总分"] == pytest.approx(121.95)
    assert rows["E001"]["销售目标管理"] == pytest.approx(86.45)
    assert rows["E001"]["客户服务管理"] == pytest.approx(25.25)  # 5.50 + 4.75 + 15.00
    assert rows["E001"]["销售人员管理"] == pytest.approx(10.25)  # 4.75 + 5.50
    assert rows["E005"]["重算总分"] == pytest.approx(111.23)
    assert rows["E007"]["表内总分"] is None and rows["E007"]["差异"] is None
    assert rows["E004"]["表内总分"] == 95 and rows["E004"]["差异"] == pytest.approx(26.95)
    # ranks: 121.95 (E001) > 111.23 (E005) > 86.28 (E007) > 57.60 (E002)
    assert [rows[e]["总排名"] for e in ("E001", "E005", "E007", "E002")] == [1, 2, 3, 4]
    assert (rows["E001"]["部门排名"], rows["E002"]["部门排名"]) == (1, 2)
    assert (rows["E005"]["部门排名"], rows["E007"]["部门排名"]) == (1, 2)
    assert rows["E004"]["总排名"] is None and rows["E004"]["状态"] == "退回"
    # 4 people x 25% = 1 place each for S, A, B: everybody keeps their grade
    assert [rows[e]["强制分布等级"] for e in ("E001", "E005", "E007", "E002")] == [
        "S",
        "A",
        "B",
        "D",
    ]

    st = wb["部门统计"]
    stats = {r[0]: r for r in st.iter_rows(min_row=2, max_row=4, values_only=True)}
    # 客服部: 121.95 and 57.60 -> mean = median = 89.775 -> 89.78; sd = 64.35/sqrt(2) = 45.50
    assert stats["客服部"][1:7] == pytest.approx((2, 89.78, 89.78, 57.60, 121.95, 45.50))
    # 销售部: 111.23 and 86.28 -> mean 98.755 -> 98.76; sd = 24.95/sqrt(2) = 17.64
    assert stats["销售部"][1:7] == pytest.approx((2, 98.76, 98.76, 86.28, 111.23, 17.64))
    # all: 57.60, 86.28, 111.23, 121.95 -> mean 94.265 -> 94.27; median (86.28+111.23)/2 = 98.755
    assert stats["全部"][1:6] == pytest.approx((4, 94.27, 98.76, 57.60, 121.95))

    det = wb["明细"]
    dh = [c.value for c in det[1]]
    lines = [dict(zip(dh, r, strict=False)) for r in det.iter_rows(min_row=2, values_only=True)]
    e2 = {ln["指标"]: ln for ln in lines if ln["工号"] == "E002"}
    assert e2["销售收入计划完成率"]["实际"] == 80  # 八十, read as 80
    assert e2["销售收入计划完成率"]["最终得分"] == 34
    assert e2["销售收入计划完成率"]["加权得分"] == pytest.approx(22.10)

    grades = {r[0]: r for r in wb["等级分布"].iter_rows(min_row=2, max_row=6, values_only=True)}
    assert {g: grades[g][2] for g in "SABCD"} == {"S": 1, "A": 1, "B": 1, "C": 0, "D": 1}

    issues = list(wb["异常"].iter_rows(min_row=2, values_only=True))
    assert any(r[3] == "total" and r[4].endswith("!M13") and r[6] == "错误" for r in issues)
    missing = {r[0] for r in wb["未交"].iter_rows(min_row=2, values_only=True)}
    assert missing == {"E003", "E004", "E006", "E008"}
    files = list(wb["文件"].iter_rows(min_row=2, values_only=True))
    assert len(files) == len(_coll.files) + len(_coll.skipped)


def test_second_collection_is_idempotent(collected, returned: Path, blank: dict[str, Path]) -> None:
    coll, out = collected
    db = out.with_suffix(".sqlite")
    con = sqlite3.connect(db)

    def dump() -> dict[str, list]:
        return {
            t: sorted(con.execute(f"SELECT * FROM {t}").fetchall(), key=repr)
            for t in ("files", "sources", "scores", "anomalies")
        }

    before = dump()
    # 11 files; the two identical unreadable ones? none: every file has its own sha256
    assert len(before["files"]) == 11
    assert len(before["sources"]) == 11
    collect([returned], out=out, roster=blank["roster"], quota="S=25%,A=25%,B=25%")
    assert dump() == before
    con.close()


def test_ledger_contents(collected) -> None:
    _coll, out = collected
    con = sqlite3.connect(out.with_suffix(".sqlite"))
    counted = con.execute(
        "SELECT employee_id, total, grade FROM files WHERE counted = 1 ORDER BY employee_id"
    ).fetchall()
    assert counted == [
        ("E001", "121.95", "S"),
        ("E002", "57.6", "D"),
        ("E005", "111.23", "A"),
        ("E007", "86.28", "B"),
    ]
    score = con.execute(
        "SELECT value FROM scores s JOIN files f USING (sha256, period) "
        "WHERE f.employee_id = 'E001' AND f.counted = 1 AND s.cell = 'ws_sales_rate'"
    ).fetchone()
    assert score == ("86.45",)
    kinds = {r[0] for r in con.execute("SELECT DISTINCT kind FROM anomalies")}
    assert {"locked_changed", "formula_overwritten", "duplicate", "wrong_period"} <= kinds
    statuses = dict(con.execute("SELECT status, COUNT(*) FROM files GROUP BY status").fetchall())
    assert statuses == {"accepted": 2, "warning": 2, "rejected": 7}
    con.close()


def test_a_new_period_adds_history(blank: dict[str, Path], tmp_path: Path) -> None:
    db = tmp_path / "ledger.sqlite"
    nov = fill(blank["E001"], tmp_path / "nov" / "张三.xlsx", G)
    # December: sales 100 -> 65.00 + 35.50 = 100.50
    dec = fill(
        blank["E001@2026-12"], tmp_path / "dec" / "张三.xlsx", {**G, "in_sales_rate_actual": 100}
    )
    collect([nov.parent], out=tmp_path / "a.xlsx", db=db)
    coll = collect([dec.parent], out=tmp_path / "b.xlsx", db=db)
    assert coll.period == "2026-12"
    assert [(t.period, t.total) for t in coll.trend] == [
        ("2026-11", Decimal("121.95")),
        ("2026-12", Decimal("100.50")),
    ]
    wb = openpyxl.load_workbook(tmp_path / "b.xlsx")
    ws = wb["趋势"]
    assert [c.value for c in ws[1]] == ["工号", "姓名", "部门", "2026-11", "2026-12"]
    assert [c.value for c in ws[2]] == ["E001", "张三", "客服部", 121.95, 100.5]


def test_zip_input_with_chinese_names(blank: dict[str, Path], tmp_path: Path) -> None:
    form = fill(blank["E001"], tmp_path / "f.xlsx", G)
    archive = tmp_path / "returned.zip"
    gbk = "客服部/张三.xlsx".encode("gbk")
    placeholder = b"A" * (len(gbk) - 5) + b".xlsx"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(zipfile.ZipInfo(placeholder.decode(), (2026, 12, 1, 9, 0, 0)), form.read_bytes())
        z.writestr("__MACOSX/客服部/._张三.xlsx", b"\x00\x05\x16\x07")
        z.writestr("客服部/~$张三.xlsx", b"\x00" * 165)
    # as Chinese Windows zips them: the name in GBK bytes, without the UTF-8 flag
    archive.write_bytes(buf.getvalue().replace(placeholder, gbk))
    sources, skipped = discover([archive])
    assert [s.display for s in sources] == [f"{archive}!客服部/张三.xlsx"]
    assert len(skipped) == 2
    coll = collect([archive], out=tmp_path / "s.xlsx")
    assert [(f.status, f.total) for f in coll.files] == [("accepted", Decimal("121.95"))]


def test_unreadable_files_are_rejected_with_a_reason(tmp_path: Path) -> None:
    d = tmp_path / "in"
    d.mkdir()
    # an encrypted workbook: an OLE container with an EncryptionInfo stream
    ole = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 100 + "EncryptionInfo".encode("utf-16-le")
    (d / "加密.xlsx").write_bytes(ole + b"\x00" * 400)
    (d / "空.xlsx").write_bytes(b"")
    (d / "网页.xlsx").write_bytes(b"<html><body>not a workbook</body></html>")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("xl/worksheets/sheet1.xml", b"\x00" * (3 * 1024 * 1024))  # ~1000:1
    (d / "炸弹.xlsx").write_bytes(buf.getvalue())
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("word/document.xml", "<w/>")
    (d / "文档.xlsx").write_bytes(buf.getvalue())
    coll = collect([d], out=tmp_path / "s.xlsx")
    got = {Path(f.path).name: (f.status, f.errors[0].kind) for f in coll.files}
    assert got == {
        "加密.xlsx": ("rejected", "encrypted"),
        "空.xlsx": ("rejected", "empty"),
        "网页.xlsx": ("rejected", "other"),
        "炸弹.xlsx": ("rejected", "zip_bomb"),
        "文档.xlsx": ("rejected", "missing_part"),
    }
    assert "打开密码" in _by_name(coll)["加密.xlsx"].reason


def test_a_copy_of_a_form_is_a_duplicate(blank: dict[str, Path], tmp_path: Path) -> None:
    a = fill(blank["E001"], tmp_path / "in" / "a" / "张三.xlsx", G, mtime=T0)
    b = tmp_path / "in" / "b" / "张三.xlsx"
    b.parent.mkdir(parents=True)
    shutil.copy2(a, b)
    coll = collect([tmp_path / "in"], out=tmp_path / "s.xlsx")
    assert sorted(f.status for f in coll.files) == ["accepted", "rejected"]
    # identical bytes: one ledger row, two sources
    con = sqlite3.connect(tmp_path / "s.sqlite")
    assert con.execute("SELECT COUNT(*) FROM files").fetchone() == (1,)
    assert con.execute("SELECT COUNT(*) FROM sources").fetchone() == (2,)
    con.close()


def test_command_json_and_strict(
    collected, returned: Path, blank: dict[str, Path], tmp_path: Path, capsys
) -> None:
    code = collect_command(
        [returned],
        tmp_path / "s.xlsx",
        blank["roster"],
        None,
        None,
        as_json=True,
        strict=True,
        secret=None,
        progress=False,
    )
    assert code == 1  # something was rejected
    data = json.loads(capsys.readouterr().out)
    assert data["period"] == "2026-11"
    assert data["counts"] == {
        "files": 11,
        "accepted": 2,
        "warning": 2,
        "rejected": 7,
        "skipped": 4,
        "missing": 4,
        "employees": 4,
    }
    assert {f["status"] for f in data["files"]} <= {"accepted", "warning", "rejected"}
    one = next(f for f in data["files"] if f["file"].endswith("张三.xlsx"))
    assert one["total"] == 121.95 and one["grade"] == "S"
    code = collect_command(
        [returned],
        tmp_path / "t.xlsx",
        None,
        None,
        None,
        as_json=False,
        strict=False,
        secret=None,
        progress=False,
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "退回" in out and "通过" in out


def test_parallel_workers_give_the_same_results(collected, returned: Path, tmp_path: Path) -> None:
    coll, _out = collected
    par = collect([returned], out=tmp_path / "p.xlsx", workers=2)
    assert [(f.path, f.status, f.total, [i.kind for i in f.issues]) for f in par.files] == [
        (f.path, f.status, f.total, [i.kind for i in f.issues if i.kind != "not_in_roster"])
        for f in coll.files
    ]


def test_checking_files_leaves_no_reference_cycles(returned: Path) -> None:
    """Workers let the garbage collector pass seldom, on the ground that checking a
    file frees all it made as it goes: every returned file (good, damaged, typed over,
    a copy, the wrong period...) checked with the collector off leaves nothing for it."""
    import gc

    from kpi_excel.collect import Context, _for_main, check_source, discover

    sources, _skipped = discover([returned])
    assert len(sources) >= 8
    ctx = Context(fast=True)
    for src in sources:  # what is kept from file to file made first
        _for_main(check_source(src, ctx))
    was = gc.isenabled()
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        for _ in range(2):
            for src in sources:
                _for_main(check_source(src, ctx))
        gc.collect()
        left = list(gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        if was:
            gc.enable()
    assert left == []


def test_a_worker_batch_sets_aside_what_is_kept_and_checks_as_the_main_process(
    returned: Path,
) -> None:
    import gc

    from kpi_excel import collect as co
    from kpi_excel.read import DEFAULT_LIMITS

    sources, _skipped = co.discover([returned])
    threshold, ctx = gc.get_threshold(), co._WORKER_CTX
    try:
        co._worker_init(None, DEFAULT_LIMITS, True)
        assert gc.get_threshold()[0] == 10_000
        got = co._worker_check_batch(sources)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
        co._WORKER_CTX = ctx
    here = co.Context(fast=True, for_recalc=False)
    want = [co._for_main(co.check_source(src, here)) for src in sources]

    def key(r: object) -> dict[str, object]:
        return {k: v for k, v in vars(r).items() if k != "seconds"}

    assert [key(r) for r in got] == [key(r) for r in want]


@pytest.mark.parametrize("files", [1, 2, 7, 63, 64, 65, 100, 2000, 10_001])
@pytest.mark.parametrize("workers", [2, 3, 8])
def test_batches_cover_every_file_once_and_shrink_to_the_end(files: int, workers: int) -> None:
    """The batches sent to workers hold every file once, in order; none is larger than
    64 files or smaller than 4 (but the last), and they never grow: the last ones are
    small, so no worker is left finishing a large batch alone."""
    from kpi_excel.collect import _batches

    sizes = _batches(files, workers)
    assert sum(sizes) == files
    assert all(4 <= s <= 64 for s in sizes[:-1]) and 1 <= sizes[-1] <= 64
    assert all(a >= b for a, b in zip(sizes, sizes[1:], strict=False))
    if files >= 64 * workers * 4:
        assert sizes[0] == 64 and max(sizes[-workers * 2 :]) <= 4


@pytest.mark.parametrize("workers", [1, 2])
def test_ledger_written_as_files_arrive_equals_one_written_at_the_end(
    returned: Path, blank: dict[str, Path], tmp_path: Path, workers: int
) -> None:
    """Scores are staged as each file arrives (from worker processes, with their ledger
    text worked out there); the committed ledger is the one written in one go at the
    end from the results, with every value formatted by the ledger itself."""
    from kpi_excel.collect import _ledger_rows
    from kpi_excel.ledger import Ledger, ScoreRow

    out = tmp_path / "s.xlsx"
    coll = collect([returned], out=out, roster=blank["roster"], workers=workers)
    for f in coll.files:  # the reference: plain rows, nothing precomputed
        f.scores = [ScoreRow(*s[:5]) for s in f.scores]
    ref = tmp_path / "ref.sqlite"
    with Ledger(ref) as led:
        led.record(_ledger_rows(coll.files))

    from test_ledger import _dump

    got, want = _dump(out.with_suffix(".sqlite")), _dump(ref)
    assert len(got["scores"]) > 100
    for rows in (got, want):  # first seen: the time of each run
        rows["files"] = [r[:-1] for r in rows["files"]]
    assert got == want


def test_unchecked_things_are_said(collected) -> None:
    coll, _out = collected
    assert any(n.startswith("已检查") and "签字" in n for n in coll.notes)
    assert any(n.startswith("日期未检查") for n in coll.notes)  # this template has no date cells


def test_another_key_rejects_every_form(blank: dict[str, Path], tmp_path: Path) -> None:
    fill(blank["E001"], tmp_path / "in" / "张三.xlsx", G)
    coll = collect([tmp_path / "in"], out=tmp_path / "s.xlsx", secret=b"another-key")
    (f,) = coll.files
    assert f.status == "rejected"
    assert [i.kind for i in f.errors] == ["fingerprint"]
    assert "密钥" in f.errors[0].message


def _plausible(cf) -> dict[str, object]:  # noqa: ANN001 - a CompiledForm
    """A value a careful manager would type into every form input of a template."""
    out: dict[str, object] = {}
    for inp in cf.inputs:
        spec = inp.spec
        if spec.source != "form" or inp.role == "na" or (inp.role == "rater" and not spec.required):
            continue
        if spec.choices:
            out[inp.name] = next(iter(spec.choices))
        elif spec.kind == "percent":
            out[inp.name] = 0.95
        elif spec.kind == "count":
            out[inp.name] = int(spec.min or 0) + 1 if spec.max is None or spec.max >= 1 else 0
        elif spec.kind in ("text", "date"):
            continue
        else:
            lo = float(spec.min) if spec.min is not None else 0.0
            hi = float(spec.max) if spec.max is not None else lo + 100
            out[inp.name] = round(lo + (hi - lo) * 0.8, 2)
    return out


@pytest.mark.parametrize(
    "template",
    sorted(
        p.stem
        for p in (Path(__file__).resolve().parent.parent / "workbook_templates").glob("*.yaml")
    ),
)
def test_every_builtin_template_collects(template: str, tmp_path: Path) -> None:
    """A form of each built-in template, filled sensibly, is read and recomputed cleanly."""
    from kpi_excel.spec.load import find_template, load_form

    form = load_form(find_template(template))
    roster = tmp_path / "roster.csv"
    roster.write_text(
        "工号,姓名,部门,岗位,考核人,考核人岗位,入职日期,绩效工资基数Q,店面,区域,负责人\n"
        "E001,张三,客服部,客服经理,李四,经理,2020-01-01,5000,一店,华东,王五\n",
        encoding="utf-8",
    )
    period = {"monthly": "2026-11", "quarterly": "2026-Q4", "yearly": "2026"}[form.period]
    (blank_form,) = generate_command(template, roster, period, tmp_path / "forms")
    cf = compile_form(form)
    fill(blank_form, tmp_path / "in" / "a.xlsx", _plausible(cf))
    coll = collect([tmp_path / "in"], out=tmp_path / "s.xlsx")
    (f,) = coll.files
    assert f.errors == [], [i.message for i in f.errors]
    assert f.status in ("accepted", "warning")
    assert f.total is not None
    assert f.total_in_file == f.total  # the cached total is what Python recomputes


def test_header_dates_are_checked(tmp_path: Path) -> None:
    import datetime as dt

    from kpi_excel.spec.load import find_template, load_form

    template = "cs_dept_manager_monthly_score"
    form = load_form(find_template(template))
    roster = tmp_path / "roster.csv"
    roster.write_text(
        "工号,姓名,部门,岗位,考核人,考核人岗位,入职日期,绩效工资基数Q,店面,区域,负责人\n"
        "E001,张三,客服部,客服经理,李四,经理,2020-01-01,5000,一店,华东,王五\n",
        encoding="utf-8",
    )
    (blank_form,) = generate_command(template, roster, "2026-11", tmp_path / "forms")
    values = _plausible(compile_form(form))
    fill(
        blank_form, tmp_path / "ok" / "a.xlsx", {**values, "hdr_input_1": dt.datetime(2026, 11, 20)}
    )
    fill(
        blank_form,
        tmp_path / "early" / "a.xlsx",
        {**values, "hdr_input_1": dt.datetime(2025, 1, 2)},
    )
    fill(blank_form, tmp_path / "none" / "a.xlsx", values)
    kinds = {}
    for case in ("ok", "early", "none"):
        (f,) = collect([tmp_path / case], out=tmp_path / f"{case}.xlsx").files
        kinds[case] = [i.kind for i in f.issues if i.cell == "hdr_input_1"]
    assert kinds == {"ok": [], "early": ["date_range"], "none": ["date_missing"]}
    coll = collect([tmp_path / "ok"], out=tmp_path / "ok2.xlsx")
    assert any(n.startswith("已检查 1 份表的表头日期") for n in coll.notes)


def test_xml_with_entities_is_refused(blank: dict[str, Path], tmp_path: Path) -> None:
    """A workbook.xml carrying a DTD (billion laughs, external entities) is never expanded."""
    src = zipfile.ZipFile(blank["E001"])
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
        b'<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
        b'<sheets/><definedNames><definedName name="x">&lol2;</definedName></definedNames></workbook>'
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for info in src.infolist():
            z.writestr(info, bomb if info.filename == "xl/workbook.xml" else src.read(info))
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "evil.xlsx").write_bytes(buf.getvalue())
    (f,) = collect([tmp_path / "in"], out=tmp_path / "s.xlsx").files
    assert f.status == "rejected" and f.errors[0].kind == "bad_xml"


def test_older_and_unknown_template_versions(blank: dict[str, Path], tmp_path: Path) -> None:
    """Forms made from another version of a template are scored under their own version."""
    from kpi_excel.spec.load import find_template

    text = find_template(TEMPLATE).read_text(encoding="utf-8")
    old = tmp_path / "old.yaml"
    # same id, older version number
    old.write_text(text.replace('version: "1.0"', 'version: "0.9"', 1), encoding="utf-8")
    custom = tmp_path / "custom.yaml"
    custom.write_text(text.replace(f"id: {TEMPLATE}", "id: my_own_form", 1), encoding="utf-8")
    for name, path, who in (("old", old, "E001"), ("custom", custom, "E002")):
        made = generate_command(str(path), blank["roster"], "2026-11", tmp_path / name)
        form = next(p for p in made if p.stem.endswith(who))
        fill(form, tmp_path / "in" / f"{name}.xlsx", G)
    coll = collect([tmp_path / "in"], out=tmp_path / "s.xlsx", period="2026-11")
    got = {Path(f.path).stem: (f.status, [i.kind for i in f.issues], f.total) for f in coll.files}
    assert got["old"][1] == ["template_old"] and got["old"][0] == "warning"
    assert got["custom"][1] == ["template_unknown"] and got["custom"][0] == "warning"
    assert got["old"][2] == got["custom"][2] == Decimal("121.95")
    msg = next(f for f in coll.files if Path(f.path).stem == "old").issues[0].message
    assert "0.9" in msg and "1.0" in msg


def test_locked_cells_are_aligned_by_row_before_comparing() -> None:
    """Rows inserted above a changed cell do not make every cell below look changed."""
    from kpi_excel.collect import _locked_diff

    expected = [
        ("A1", "标题"),
        ("A2", "序号"),
        ("B2", "=sys_a"),
        ("A3", "1"),
        ("E3", 0.05),
        ("A4", "合计"),
    ]
    # two rows inserted after row 1; the weight in E3 (now E5) edited; nothing else changed
    now = [
        ("A1", "标题"),
        ("A4", "序号"),
        ("B4", "=SYS_A"),
        ("A5", "1"),
        ("E5", 0.1),
        ("A6", "合计"),
    ]
    assert _locked_diff(expected, now) == [("E3", "E5", "0.05", "0.1")]
    assert (
        _locked_diff(
            expected, [("A1", "标题"), *[(f"{c[0]}{int(c[1:]) + 2}", v) for c, v in expected[1:]]]
        )
        == []
    )


def test_results_set_aside_from_the_collector_only_while_collecting(
    returned: Path, tmp_path: Path
) -> None:
    """collect sets the results it holds aside from the garbage collector's passes
    while it runs (gc.freeze) and gives them back at the end; a process that froze
    objects itself is left as it was."""
    import gc

    from kpi_excel.collect import _every, _results_set_aside

    assert gc.get_freeze_count() == 0
    threshold = gc.get_threshold()
    seen: list[int] = []
    passes_after: list[int] = []

    def during(_res: object) -> None:
        seen.append(gc.get_freeze_count())
        passes_after.append(gc.get_threshold()[0])

    coll = collect([returned], out=tmp_path / "s.xlsx", on_file=during)
    assert coll.files and gc.get_freeze_count() == 0 and gc.isenabled()
    assert seen[0] > 0  # the discovered sources, at least, were set aside
    # the collector passed seldom meanwhile, as it did before once the run ended
    assert min(passes_after) >= 10_000 and gc.get_threshold() == threshold
    # frozen by the caller: nothing is frozen or unfrozen by the run
    gc.freeze()
    try:
        mine = gc.get_freeze_count()
        with _results_set_aside() as set_aside:
            set_aside()
            assert gc.get_freeze_count() == mine and gc.get_threshold() == threshold
        assert gc.get_freeze_count() == mine
    finally:
        gc.unfreeze()
    calls: list[int] = []
    assert list(_every(range(7), 3, lambda: calls.append(1))) == list(range(7))
    assert len(calls) == 2


def _skip_reason_reference(name: str) -> str | None:
    """collect._skip_reason as it was before its shortcut for ordinary names."""
    import re as re_mod

    from kpi_excel.collect import _SYSTEM_FILES

    low = name.lower()
    if name.startswith("~$"):
        return "Excel/WPS 打开文件时产生的临时锁文件，已跳过"
    if name.startswith(".~lock."):
        return "LibreOffice 打开文件时产生的临时锁文件，已跳过"
    if name.startswith("._"):
        return "macOS 系统文件，已跳过"
    if low in _SYSTEM_FILES:
        return "系统文件，已跳过"
    if re_mod.match(r"^~wrl\d+\.tmp$", low):
        return "Office 保存时的临时文件，已跳过"
    if re_mod.match(r"^\..+\.\d+\.tmp\.xls[xm]$", low):
        return "汇总表写入时的临时文件（上次运行中断时留下），已跳过"
    return None


@settings(max_examples=600, deadline=None)
@given(
    head=st.sampled_from(["", "~", "~$", ".", ".~lock.", "._", "~WRL", ".汇总.", "Thumbs", "x"]),
    body=st.text(alphabet="~$._0123456789aAdbDStoreicnwrlmpxs\r汇总", max_size=8),
    tail=st.sampled_from(["", ".tmp", ".xlsx", ".tmp.xlsm", ".db", ".ini", ".DS_Store"]),
)
def test_skip_reasons_as_before(head: str, body: str, tail: str) -> None:
    from kpi_excel.collect import _skip_reason

    name = head + body + tail
    assert _skip_reason(name) == _skip_reason_reference(name)
    for system in (
        ".DS_Store",
        "Thumbs.db",
        "desktop.ini",
        "EHTHUMBS.DB",
        "Icon\r",
        "~WRL0001.tmp",
    ):
        assert _skip_reason(system) == _skip_reason_reference(system) is not None


def test_a_file_reached_twice_counts_once(tmp_path: Path, returned: Path) -> None:
    """A file linked from its own folder, a file given beside its folder, a folder given
    twice: each file is an input once, and a link to it is said."""
    from kpi_excel.collect import discover

    d = tmp_path / "in"
    d.mkdir()
    first = sorted(returned.glob("*.xlsx"))[0]
    (d / "a.xlsx").write_bytes(first.read_bytes())
    (d / "b.xlsx").symlink_to(d / "a.xlsx")
    (d / "c.xlsx").write_bytes(first.read_bytes())  # the same bytes, another file
    sources, skipped = discover([d, d / "c.xlsx"])
    assert [Path(s.display).name for s in sources] == ["a.xlsx", "c.xlsx"]
    said = sorted((Path(p).name, why.split("（")[0]) for p, why in skipped)
    assert said == [("b.xlsx", f"与 {d / 'a.xlsx'} 是同一个文件")]
    again, _ = discover([d, d])
    assert [s.display for s in again] == [s.display for s in sources]


@settings(max_examples=3000, deadline=None)
@given(st.text(alphabet="ab./\\x汇 :~!", max_size=12))
def test_a_file_suffix_as_path_has_it(path: str) -> None:
    """collect._suffix, which check_source uses instead of making a Path per file,
    is Path(path).suffix for any path (dots, separators, leading dots, a zip member's
    name)."""
    from kpi_excel.collect import _suffix

    assert _suffix(path) == Path(path).suffix
    assert _suffix("归档.zip!表.XLSX") == Path("归档.zip!表.XLSX").suffix == ".XLSX"
