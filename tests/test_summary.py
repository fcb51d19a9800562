"""The summary workbook: ranks, forced distribution with ties, safe text, layout.

The expected numbers below are worked out by hand from the rule in
:mod:`kpi_excel.summary` (places = share x people, rounded half up; tied totals share
the better grade and the overflow is reported; nobody is raised above their score).
"""

from __future__ import annotations

import zipfile
from decimal import Decimal
from pathlib import Path

import openpyxl
import pytest

from kpi_excel.collect import Collection, FileResult, IndicatorLine, Issue, safe_text
from kpi_excel.summary import competition_ranks, forced_distribution, write_summary

D = Decimal
GRADES = ["S", "A", "B", "C", "D"]


def test_competition_ranks_share_ties() -> None:
    ranks = competition_ranks([("a", D(90)), ("b", D(95)), ("c", D(95)), ("d", D(80))])
    assert ranks == {"b": 1, "c": 1, "a": 3, "d": 4}


def test_forced_distribution_ties_share_the_better_grade() -> None:
    people = [
        ("p01", D(125), "S"),
        ("p02", D(121), "S"),
        ("p03", D(110), "A"),
        ("p04", D(110), "A"),
        ("p05", D(95), "B"),
        ("p06", D(90), "B"),
        ("p07", D(90), "B"),
        ("p08", D(88), "B"),
        ("p09", D(72), "C"),
        ("p10", D(60), "D"),
    ]
    quota = {"S": D("0.1"), "A": D("0.2"), "B": D("0.4"), "C": D("0.2"), "D": D("0.1")}
    placed, stats = forced_distribution(people, GRADES, quota)
    forced = {p.key: p.forced for p in placed}
    # S: 1 place -> p01; p02 (S by score) moves to A.
    # A: 2 places -> p02, then p03 and p04 tie at 110 across the boundary: both get A.
    assert forced == {
        "p01": "S",
        "p02": "A",
        "p03": "A",
        "p04": "A",
        "p05": "B",
        "p06": "B",
        "p07": "B",
        "p08": "B",
        "p09": "C",
        "p10": "D",
    }
    by = {s.grade: s for s in stats}
    assert [(g, by[g].places, by[g].by_score, by[g].forced, by[g].overflow) for g in GRADES] == [
        ("S", 1, 2, 1, 0),
        ("A", 2, 2, 3, 1),
        ("B", 4, 4, 4, 0),
        ("C", 2, 1, 1, 0),
        ("D", 1, 1, 1, 0),
    ]
    assert "并列" in by["A"].note and "超出名额 1" in by["A"].note
    notes = {p.key: p.note for p in placed}
    assert "调为 A" in notes["p02"]
    assert "同享 A" in notes["p03"] and "同享 A" in notes["p04"]
    ranks = {p.key: p.rank for p in placed}
    assert ranks["p03"] == ranks["p04"] == 3 and ranks["p05"] == 5


def test_forced_distribution_pushes_down_and_never_up() -> None:
    people = [
        ("a", D(110), "A"),
        ("b", D(105), "A"),
        ("c", D(105), "A"),
        ("d", D(101), "A"),
        ("e", D(90), "B"),
    ]
    # 5 people x 20% = 1 place for A; no quota for B: everybody else A-by-score gets B
    placed, stats = forced_distribution(people, GRADES, {"A": D("0.2")})
    assert {p.key: p.forced for p in placed} == {"a": "A", "b": "B", "c": "B", "d": "B", "e": "B"}
    assert {s.grade: s.forced for s in stats} == {"S": 0, "A": 1, "B": 4, "C": 0, "D": 0}
    # nobody gets a better grade than the score gives
    order = {g: i for i, g in enumerate(GRADES)}
    assert all(order[p.forced] >= order[p.grade] for p in placed)


def test_forced_distribution_rounds_places_half_up() -> None:
    people = [(f"p{i}", D(100 - i), "A") for i in range(5)]
    # 5 x 30% = 1.5 -> 2 places
    placed, stats = forced_distribution(people, GRADES, {"A": D("0.3")})
    assert next(s.places for s in stats if s.grade == "A") == 2
    assert [p.forced for p in placed] == ["A", "A", "B", "B", "B"]


@pytest.mark.parametrize(
    ("text", "safe"),
    [
        ("=1+2", "'=1+2"),
        ('=HYPERLINK("http://x","点我")', '\'=HYPERLINK("http://x","点我")'),
        ("+86 138", "'+86 138"),
        ("-5", "'-5"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("张三", "张三"),
        ("a\x00b", "a\ufffdb"),
        ("", ""),
    ],
)
def test_safe_text(text: str, safe: str) -> None:
    assert safe_text(text) == safe


def _result(
    eid: str, name: str, dept: str, total: str | None, status: str = "accepted"
) -> FileResult:
    f = FileResult(f"returned/{eid}.xlsx", 1000, 1_790_000_000.0, sha256=eid * 8)
    f.identified = True
    f.counted = True
    f.status = status
    f.employee_id, f.name, f.department, f.position = eid, name, dept, "客服经理"
    f.period, f.template_id, f.template_version, f.template_title = "2026-11", "t", "1.0", "考核表"
    f.composition = "weighted"
    f.grades = [("S", "卓越"), ("A", "优秀"), ("B", "良好"), ("C", "合格"), ("D", "待改进")]
    f.total = None if total is None else D(total)
    f.total_in_file = f.total
    f.grade = None if total is None else ("A" if D(total) >= 100 else "B")
    f.sections = [("s1", "业绩", f.total)]
    f.lines = [
        IndicatorLine(
            "sales",
            "销售收入计划完成率",
            "s1",
            "业绩",
            D(100),
            D(110),
            [],
            D(133),
            {"HR复核": None},
            D(133),
            D("0.65"),
            D("86.45"),
            D(100),
            "线性",
        )
    ]
    return f


def test_summary_layout_and_safety(tmp_path: Path) -> None:
    evil = _result("E001", '=HYPERLINK("http://x","点我")', "+客服部", "121.95")
    evil.issues.append(
        Issue(evil.path, "E001", "in_x", "表!J6", "text_normalised", "warning", "-已按 80 计")
    )
    other = _result("E002", "王五", "+客服部", "99.5")
    bad = _result("E003", "赵六", "销售部", "80", status="rejected")
    bad.issues.append(
        Issue(bad.path, "E003", "total", "表!M13", "formula_overwritten", "error", "公式被覆盖")
    )
    coll = Collection("2026-11", [evil, other, bad], [("returned/~$x.xlsx", "临时锁文件，已跳过")])
    out = write_summary(coll, tmp_path / "summary.xlsx")
    assert not list(tmp_path.glob(".*tmp*"))
    wb = openpyxl.load_workbook(out)
    assert wb.sheetnames == ["汇总", "明细", "部门统计", "等级分布", "异常", "未交", "趋势", "文件"]
    ws = wb["汇总"]
    head = [c.value for c in ws[1]]
    assert head[:6] == ["工号", "姓名", "部门", "岗位", "模板", "版本"]
    rows = {
        r[0]: dict(zip(head, r, strict=False)) for r in ws.iter_rows(min_row=2, values_only=True)
    }
    # formula-like text from returned files is inert, and stored as text
    assert rows["E001"]["姓名"] == '\'=HYPERLINK("http://x","点我")'
    assert rows["E001"]["部门"] == "'+客服部"
    for row in ws.iter_rows(min_row=2):
        for cell in row:
            assert cell.data_type != "f"
    # numbers are numbers; ranks only among accepted returns
    assert rows["E001"]["重算总分"] == pytest.approx(121.95)
    assert rows["E001"]["总排名"] == 1 and rows["E002"]["总排名"] == 2
    assert rows["E003"]["总排名"] is None and rows["E003"]["状态"] == "退回"
    assert ws.freeze_panes == "A2" and ws.auto_filter.ref
    total_col = head.index("重算总分") + 1
    assert ws.cell(2, total_col).data_type == "n"
    # weights as percentages in 明细
    det = wb["明细"]
    dh = [c.value for c in det[1]]
    wcell = det.cell(2, dh.index("权重/分值") + 1)
    assert wcell.value == pytest.approx(0.65) and "%" in wcell.number_format
    # anomalies: message text inert too
    an = wb["异常"]
    msgs = [r[7] for r in an.iter_rows(min_row=2, values_only=True)]
    assert "'-已按 80 计" in msgs
    # every file and the skipped one are listed
    files = [r[0] for r in wb["文件"].iter_rows(min_row=2, values_only=True)]
    assert files == [
        "returned/E001.xlsx",
        "returned/E002.xlsx",
        "returned/E003.xlsx",
        "returned/~$x.xlsx",
    ]
    # charts for department averages, the histogram and grades
    names = zipfile.ZipFile(out).namelist()
    assert sum(n.startswith("xl/charts/chart") for n in names) >= 3


def test_a_failed_write_keeps_the_previous_summary(tmp_path: Path) -> None:
    out = tmp_path / "summary.xlsx"
    good = Collection("2026-11", [_result("E001", "张三", "客服部", "100")], [])
    write_summary(good, out)
    before = out.read_bytes()
    broken = _result("E002", "王五", "客服部", "90")
    broken.status = "unheard-of"  # not a status: writing fails half-way
    with pytest.raises(KeyError):
        write_summary(Collection("2026-11", [broken], []), out)
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["summary.xlsx"]
