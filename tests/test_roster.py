"""Roster and targets: encodings, columns, targets, mixed rosters, and bad rosters
reported in one error with every row number, writing nothing."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
import xlsxwriter

from kpi_excel.errors import RosterError
from kpi_excel.generate import generate_command
from kpi_excel.roster import _parse_number, load_roster, read_table
from kpi_excel.spec import model as m
from kpi_excel.spec.load import builtin_forms, load_form

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
CS = "cs_manager_monthly_kpi"
HEAD = "工号,姓名,部门,岗位,考核人"


@pytest.fixture(scope="module")
def cs() -> m.Form:
    return load_form(builtin_forms()[CS])


def _csv(tmp_path: Path, text: str, encoding: str = "utf-8", name: str = "r.csv") -> Path:
    p = tmp_path / name
    p.write_bytes(text.encode(encoding))
    return p


def _problems(e: pytest.ExceptionInfo[RosterError]) -> str:
    return e.value.report()


# ------------------------------------------------------------------ encodings and formats


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gbk", "gb18030"])
def test_csv_encodings(tmp_path: Path, cs: m.Form, encoding: str) -> None:
    p = _csv(
        tmp_path,
        f"{HEAD}\r\nE1001,张伟,客服部,客服经理,李娜\r\nE1002,欧阳娜娜,客服部,客服经理,李娜\r\n",
        encoding,
    )
    emps = load_roster(p, cs)
    assert [(e.employee_id, e.name, e.department) for e in emps] == [
        ("E1001", "张伟", "客服部"),
        ("E1002", "欧阳娜娜", "客服部"),
    ]
    assert emps[0].fields["reviewer"] == "李娜"


def test_utf16_tab_separated(tmp_path: Path, cs: m.Form) -> None:
    text = HEAD.replace(",", "\t") + "\nE1\t张伟\t客服部\t经理\t李娜\n"
    p = _csv(tmp_path, text, "utf-16", "r.txt")
    assert load_roster(p, cs)[0].name == "张伟"


def test_bom_header_is_not_part_of_first_column(tmp_path: Path, cs: m.Form) -> None:
    p = _csv(tmp_path, f"\ufeff{HEAD}\nE1,张伟,客服部,经理,李娜\n")
    assert read_table(p).columns[0] == "工号"


def test_xlsx_with_title_row_and_numbers(tmp_path: Path, cs: m.Form) -> None:
    import datetime as dt

    p = tmp_path / "r.xlsx"
    wb = xlsxwriter.Workbook(p)
    ws = wb.add_worksheet("花名册")
    ws.write_row(0, 0, ["2026年11月 考核名单"])
    ws.write_row(1, 0, ["工号", "姓名", "部门", "岗位", "考核人", "入职日期", "sales_rate.target"])
    ws.write_row(2, 0, [1001, "张伟", "客服部", "客服经理", "李娜"])
    ws.write_datetime(2, 5, dt.datetime(2020, 3, 15), wb.add_format({"num_format": "yyyy-mm-dd"}))
    ws.write_number(2, 6, 120.5)
    wb.close()
    (emp,) = load_roster(p, cs)
    assert emp.employee_id == "1001" and emp.row == 3
    assert emp.fields["hire_date"] == "2020-03-15"
    assert emp.targets["in_sales_rate_target"] == Decimal("120.5")


def test_sample_roster_generates_every_template(tmp_path: Path) -> None:
    table = read_table(SAMPLES / "roster.xlsx")
    tids = sorted({r[table.columns.index("模板")] for _n, r in table.rows})
    assert len(table.rows) >= 30 and len(tids) >= 3
    total = 0
    for tid in tids:
        paths = generate_command(
            str(tid),
            SAMPLES / "roster.xlsx",
            "2026-11",
            tmp_path / "out",
            targets=SAMPLES / "targets.csv",
        )
        total += len(paths)
    assert total == len(table.rows)
    depts = {p.name.split("_")[1] for p in (tmp_path / "out").iterdir()}
    assert len(depts) >= 3


def test_sample_csv_matches_xlsx() -> None:
    a, b = read_table(SAMPLES / "roster.xlsx"), read_table(SAMPLES / "roster.csv")
    assert a.columns == b.columns and len(a.rows) == len(b.rows)


# ------------------------------------------------------------------ targets


def test_targets_by_id_and_by_chinese_name_and_defaults(tmp_path: Path, cs: m.Form) -> None:
    p = _csv(
        tmp_path,
        f"{HEAD},sales_rate.target,客户满意度评分-目标满意度(分),培训计划完成率-计划培训次数\n"
        "E1,张伟,客服部,经理,李娜,150,4.8,\n"
        "E2,王芳,客服部,经理,李娜,,,6\n",
    )
    e1, e2 = load_roster(p, cs)
    assert e1.targets["in_sales_rate_target"] == 150
    assert e1.targets["in_satisfaction_target"] == Decimal("4.8")
    assert e1.targets["in_training_planned"] == 4  # template default
    assert e2.targets["in_sales_rate_target"] == 100  # template default
    assert e2.targets["in_training_planned"] == 6


def test_targets_file_overrides_roster(tmp_path: Path, cs: m.Form) -> None:
    r = _csv(
        tmp_path,
        f"{HEAD},sales_rate.target\nE1,张伟,客服部,经理,李娜,150\nE2,王芳,客服部,经理,李娜,90\n",
    )
    t = _csv(tmp_path, "工号,姓名,sales_rate.target\nE2,王芳,95\n", "gbk", "t.csv")
    e1, e2 = load_roster(r, cs, t)
    assert (e1.targets["in_sales_rate_target"], e2.targets["in_sales_rate_target"]) == (150, 95)


def test_targets_file_problems(tmp_path: Path, cs: m.Form) -> None:
    r = _csv(tmp_path, f"{HEAD}\nE1,张伟,客服部,经理,李娜\n")
    t = _csv(
        tmp_path, "工号,sales_rate.target,nosuch.target\nE9,95,1\nE1,abc,1\nE1,90,1\n", name="t.csv"
    )
    with pytest.raises(RosterError) as e:
        load_roster(r, cs, t)
    text = _problems(e)
    assert "t.csv 第 2 行" in text and "E9 不在花名册中" in text
    assert "t.csv 第 3 行" in text and "abc" in text
    assert "t.csv 第 4 行" in text and "重复" in text
    assert "nosuch.target" in text


def test_mixed_roster_only_rows_of_the_template(tmp_path: Path, cs: m.Form) -> None:
    p = _csv(
        tmp_path,
        f"{HEAD},模板,sales_rate.target,stock_assets.target\n"
        f"E1,张伟,客服部,经理,李娜,{CS},120,\n"
        "E2,马超,营业部,客户经理,谢宏,customer_manager_kpi_scale,,5000\n",
    )
    (emp,) = load_roster(p, cs)
    assert emp.employee_id == "E1"
    other = load_form(builtin_forms()["customer_manager_kpi_scale"])
    with pytest.raises(RosterError) as e:  # that template needs 考核人岗位
        load_roster(p, other)
    assert "考核人岗位" in _problems(e)


def test_mixed_roster_without_matching_rows(tmp_path: Path, cs: m.Form) -> None:
    p = _csv(tmp_path, f"{HEAD},模板\nE2,马超,营业部,客户经理,谢宏,customer_manager_kpi_scale\n")
    with pytest.raises(RosterError) as e:
        load_roster(p, cs)
    assert "没有“模板”为 cs_manager_monthly_kpi" in _problems(e)


@pytest.mark.parametrize(
    ("kind", "raw", "want"),
    [
        ("percent", "95%", Decimal("0.95")),
        ("percent", 0.95, Decimal("0.95")),
        ("percent", "120％", Decimal("1.2")),
        ("number", "1,200", Decimal(1200)),
        ("number", "１２", Decimal(12)),
        ("count", 3.0, Decimal(3)),
    ],
)
def test_parse_number(kind: str, raw: object, want: Decimal) -> None:
    value, err = _parse_number(raw, m.InputSpec(label="x", kind=kind))  # type: ignore[arg-type]
    assert err is None and value == want


@pytest.mark.parametrize(
    ("kind", "raw", "hint"),
    [
        ("percent", 95, "95%"),
        ("number", "95%", "不是百分比"),
        ("count", 2.5, "整数"),
        ("number", "五百", "不是数字"),
        ("number", True, "是/否"),
    ],
)
def test_parse_number_errors(kind: str, raw: object, hint: str) -> None:
    value, err = _parse_number(raw, m.InputSpec(label="x", kind=kind))  # type: ignore[arg-type]
    assert value is None and err and hint in err


# ------------------------------------------------------------------ bad rosters: one error, nothing written


def _assert_untouched(out: Path) -> None:
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.tmp")]


@pytest.fixture
def out(tmp_path: Path) -> Path:
    o = tmp_path / "out"
    o.mkdir()
    (o / "keep.txt").write_text("keep")
    return o


def test_missing_columns(tmp_path: Path, out: Path) -> None:
    p = _csv(tmp_path, "工号,部门,岗位\nE1,客服部,经理\n")
    with pytest.raises(RosterError) as e:
        generate_command(CS, p, "2026-11", out)
    text = _problems(e)
    assert "r.csv 第 1 行（表头）" in text
    assert "缺少列“姓名”" in text and "缺少列“考核人”" in text
    _assert_untouched(out)


def test_duplicate_ids(tmp_path: Path, out: Path) -> None:
    p = _csv(
        tmp_path,
        f"{HEAD}\nE1,张伟,客服部,经理,李娜\nE2,王芳,客服部,经理,李娜\ne1,刘洋,客服部,经理,李娜\n",
    )
    with pytest.raises(RosterError) as e:
        generate_command(CS, p, "2026-11", out)
    assert "r.csv 第 4 行: 工号 e1 重复（与第 2 行相同）" in _problems(e)
    _assert_untouched(out)


def test_unknown_indicator_column(tmp_path: Path, out: Path) -> None:
    p = _csv(tmp_path, f"{HEAD},sales_rat.target,备注\nE1,张伟,客服部,经理,李娜,100,老员工\n")
    with pytest.raises(RosterError) as e:
        generate_command(CS, p, "2026-11", out)
    text = _problems(e)
    assert "sales_rat.target" in text and "第 1 行" in text
    assert "备注" not in text  # extra columns without a '.' or '-' are just kept
    _assert_untouched(out)


def test_known_indicator_unknown_input(tmp_path: Path, out: Path) -> None:
    p = _csv(tmp_path, f"{HEAD},sales_rate.actual\nE1,张伟,客服部,经理,李娜,100\n")
    with pytest.raises(RosterError) as e:
        generate_command(CS, p, "2026-11", out)
    assert "sales_rate.target" in _problems(e)  # says what is available


def test_non_numeric_and_out_of_range_targets(tmp_path: Path, out: Path) -> None:
    p = _csv(
        tmp_path,
        f"{HEAD},sales_rate.target,satisfaction.target\n"
        "E1,张伟,客服部,经理,李娜,一百,4.6\n"
        "E2,王芳,客服部,经理,李娜,100,6\n",
    )
    with pytest.raises(RosterError) as e:
        generate_command(CS, p, "2026-11", out)
    text = _problems(e)
    assert "r.csv 第 2 行" in text and "一百" in text
    assert "r.csv 第 3 行" in text and "大于上限 5" in text
    _assert_untouched(out)


def test_empty_name_and_id(tmp_path: Path, out: Path) -> None:
    p = _csv(
        tmp_path, f"{HEAD}\nE1,,客服部,经理,李娜\n,王芳,客服部,经理,李娜\n\nE3,刘洋,,经理,李娜\n"
    )
    with pytest.raises(RosterError) as e:
        generate_command(CS, p, "2026-11", out)
    text = _problems(e)
    assert "r.csv 第 2 行: 姓名为空（工号 E1）" in text
    assert "r.csv 第 3 行: 工号为空" in text
    assert "r.csv 第 5 行: 部门为空" in text  # the blank line 4 is skipped, numbers stay true
    _assert_untouched(out)


def test_all_problems_in_one_error(tmp_path: Path, out: Path) -> None:
    p = _csv(
        tmp_path,
        f"{HEAD},sales_rate.target,foo.bar\nE1,,客服部,经理,李娜,x\nE1,王芳,客服部,经理,李娜,1\n",
        "gbk",
    )
    with pytest.raises(RosterError) as e:
        generate_command(CS, p, "2026-11", out)
    assert len(e.value.problems) == 4
    assert str(e.value).startswith("r.csv: 花名册有 4 处问题，未生成任何文件")
    _assert_untouched(out)


def test_pay_template_needs_q(tmp_path: Path) -> None:
    form = load_form(builtin_forms()["cs_dept_manager_monthly_score"])
    p = _csv(
        tmp_path,
        "工号,姓名,部门,岗位,绩效工资基数Q\nE1,张伟,客服部,经理,\nE2,王芳,客服部,经理,6000\n",
    )
    with pytest.raises(RosterError) as e:
        load_roster(p, form)
    assert "r.csv 第 2 行: 绩效工资基数Q 为空" in _problems(e)


def test_not_a_roster(tmp_path: Path, cs: m.Form) -> None:
    with pytest.raises(RosterError, match="工号"):
        load_roster(_csv(tmp_path, "a,b\n1,2\n"), cs)
    with pytest.raises(RosterError, match="xlsx"):
        load_roster(_csv(tmp_path, "x", name="r.xls"), cs)
    with pytest.raises(RosterError, match="找不到"):
        load_roster(tmp_path / "missing.csv", cs)


def test_empty_roster(tmp_path: Path, cs: m.Form) -> None:
    with pytest.raises(RosterError) as e:
        load_roster(_csv(tmp_path, f"{HEAD}\n\n"), cs)
    assert "没有员工" in _problems(e)
