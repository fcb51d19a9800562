"""``kpi-excel recalc``: one form's breakdown, and ``--write`` with recomputed values."""

from __future__ import annotations

import hashlib
import json
import zipfile
from decimal import Decimal
from pathlib import Path

import openpyxl
import pytest
from python_calamine import CalamineWorkbook
from test_collect import ROSTER, TEMPLATE, G, Text, fill, signed

from kpi_excel.collect import collect
from kpi_excel.errors import KpiExcelError
from kpi_excel.generate import generate_command
from kpi_excel.recalc import (
    breakdown_json,
    patch_cached,
    recalc_command,
    recalc_file,
    write_recomputed,
)


@pytest.fixture(scope="module")
def form(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("recalc")
    roster = root / "roster.csv"
    roster.write_text(ROSTER, encoding="utf-8")
    paths = generate_command(TEMPLATE, roster, "2026-11", root / "forms")
    return next(p for p in paths if p.stem.endswith("E001"))


def test_breakdown(form: Path, tmp_path: Path) -> None:
    res = recalc_file(fill(form, tmp_path / "a.xlsx", G))
    assert res.status == "accepted"
    got = {ln.indicator: (ln.final, ln.weight, ln.weighted) for ln in res.lines}
    # hand-computed, see the table in test_collect.py
    assert got == {
        "sales_rate": (Decimal(133), Decimal("0.65"), Decimal("86.45")),
        "satisfaction": (Decimal(110), Decimal("0.05"), Decimal("5.50")),
        "complaint_timely": (Decimal(95), Decimal("0.05"), Decimal("4.75")),
        "complaint_resolved": (Decimal(100), Decimal("0.15"), Decimal("15.00")),
        "training": (Decimal(95), Decimal("0.05"), Decimal("4.75")),
        "service_years": (Decimal(110), Decimal("0.05"), Decimal("5.50")),
    }
    assert res.total == Decimal("121.95") and res.grade == "S"
    sales = next(ln for ln in res.lines if ln.indicator == "sales_rate")
    assert "计划100万元" in sales.rule  # the method text, rendered with the target
    assert [(n, v) for n, _label, v in sales.inputs] == [
        ("in_sales_rate_target", Decimal(100)),
        ("in_sales_rate_actual", Decimal(110)),
    ]


def test_command_prints_and_returns(
    form: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = fill(form, tmp_path / "a.xlsx", G)
    assert recalc_command(good, None) == 0
    out = capsys.readouterr().out
    assert "121.95" in out and "销售收入计划完成率" in out and "通过" in out
    bad = fill(form, tmp_path / "b.xlsx", {**G, "in_training_done": "优秀"})
    assert recalc_command(bad, None, as_json=True) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["status"] == "rejected"
    assert data["issues"][0]["cell"] == "in_training_done"
    assert data["issues"][0]["address"].endswith("!J10")
    training = next(ln for ln in data["lines"] if ln["indicator"] == "training")
    assert training["score"] == ""  # no score for a word in a count cell


def test_write_replaces_cached_values(form: Path, tmp_path: Path) -> None:
    stale = fill(form, tmp_path / "stale.xlsx", G, recalc=False)
    original = hashlib.sha256(stale.read_bytes()).hexdigest()
    res = recalc_file(stale)
    assert [i.kind for i in res.issues] == ["stale_value"]
    out = write_recomputed(stale, tmp_path / "fixed.xlsx", res)
    assert hashlib.sha256(stale.read_bytes()).hexdigest() == original  # never modified
    # a viewer that never recalculates now shows the right numbers
    wb = openpyxl.load_workbook(out, data_only=True)
    ws = wb[res.sheet]
    assert ws[res.coords["total"]].value == pytest.approx(121.95)
    assert ws[res.coords["grade"]].value == "S"
    cal = (
        CalamineWorkbook.from_path(str(out))
        .get_sheet_by_name(res.sheet)
        .to_python(skip_empty_area=False)
    )
    col = ord(res.coords["ws_sales_rate"][0]) - 65
    row = int(res.coords["ws_sales_rate"][1:]) - 1
    assert cal[row][col] == pytest.approx(86.45)
    # formulas, inputs and the fingerprint are untouched: the copy is accepted as is
    again = recalc_file(out)
    assert again.status == "accepted" and again.issues == []
    f1 = openpyxl.load_workbook(stale)[res.sheet]
    f2 = openpyxl.load_workbook(out)[res.sheet]
    assert [[c.value for c in r] for r in f1.iter_rows()] == [
        [c.value for c in r] for r in f2.iter_rows()
    ]
    # every other part of the file is byte-for-byte the same
    z1, z2 = zipfile.ZipFile(stale), zipfile.ZipFile(out)
    part = next(
        n
        for n in z1.namelist()
        if n.startswith("xl/worksheets/") and b"in_sales_rate" in z1.read(n)
    )
    assert [n for n in z1.namelist()] == [n for n in z2.namelist()]
    for n in z1.namelist():
        if n != part:
            assert z1.read(n) == z2.read(n), n


def test_write_refuses_to_overwrite_the_source(form: Path, tmp_path: Path) -> None:
    f = fill(form, tmp_path / "a.xlsx", G)
    with pytest.raises(KpiExcelError, match="不能覆盖原文件"):
        write_recomputed(f, f)


def test_patch_leaves_values_alone(form: Path) -> None:
    data = form.read_bytes()
    # C1 holds no formula (a title or blank): asking to patch it changes nothing
    part = "xl/worksheets/sheet1.xml"
    before = zipfile.ZipFile(form).read(part)
    after = zipfile.ZipFile(
        __import__("io").BytesIO(patch_cached(data, part, {"A1": Decimal(5)}))
    ).read(part)
    assert before == after


def test_json_is_inert(form: Path, tmp_path: Path) -> None:
    f = fill(form, tmp_path / "a.xlsx", {**G, "in_training_done": Text("=1+2")})
    data = breakdown_json(recalc_file(f))
    msg = next(i["message"] for i in data["issues"] if i["cell"] == "in_training_done")
    assert "=1+2" in msg
    assert not any(str(v).startswith("=") for i in data["issues"] for v in i.values())


def test_a_formula_typed_into_an_input_is_reported(form: Path, tmp_path: Path) -> None:
    f = fill(
        form,
        tmp_path / "a.xlsx",
        {**G, "in_training_done": "=1+2"},
        computed={"in_training_done": 3},
    )
    res = recalc_file(f)
    (issue,) = [i for i in res.issues if i.cell == "in_training_done"]
    assert issue.kind == "input_formula" and "=1+2" in issue.message
    # the helper wrote what a spreadsheet computes: 3 -> 95, as with the plain 3
    assert res.total == Decimal("121.95")


@pytest.mark.engine
def test_forms_filled_and_saved_by_libreoffice_are_accepted(form: Path, tmp_path: Path) -> None:
    """A real spreadsheet engine fills the inputs by name, recalculates and saves."""
    from kpi_excel import _lo

    fills = {**G, **signed("张三")}
    (res,) = _lo.recalc([_lo.Job(form, fills=fills, read=["total", "grade"])], tmp_path / "lo")
    assert res.error is None, res.error
    assert res.values["total"] == pytest.approx(121.95)
    coll = collect([res.out.parent], out=tmp_path / "summary.xlsx")  # type: ignore[union-attr]
    (f,) = coll.files
    assert f.status == "accepted", [i.message for i in f.issues]
    assert f.total == Decimal("121.95") and f.total_in_file == Decimal("121.95")


@pytest.mark.engine
def test_written_values_agree_with_libreoffice(form: Path, tmp_path: Path) -> None:
    """The values ``--write`` caches are the ones LibreOffice computes."""
    from kpi_excel import _lo

    stale = fill(
        form, tmp_path / "stale.xlsx", {**G, "in_complaint_resolved_resolved": 47}, recalc=False
    )
    res = recalc_file(stale)
    fixed = write_recomputed(stale, tmp_path / "fixed.xlsx", res)
    names = list(res.as_typed)
    (lo,) = _lo.recalc([_lo.Job(stale, read=names)], tmp_path / "lo")
    assert lo.error is None, lo.error
    ws = openpyxl.load_workbook(fixed, data_only=True)[res.sheet]
    for name in names:
        mine = ws[res.coords[name]].value
        theirs = lo.values[name]
        if isinstance(theirs, float):
            assert mine == pytest.approx(theirs), name
        else:
            assert (mine or "") == (theirs or ""), name
    # 47/50 = 94% -> tier >=90%: 80 -> 12.00; total 121.95 - 15.00 + 12.00 = 118.95 -> A
    assert ws[res.coords["total"]].value == pytest.approx(118.95)
