"""The fast read path (kpi_excel.fastread) against the reference path (read.Book).

A mixed set of returned forms -- good, text in number cells, an edited weight, an
overwritten formula, never recalculated, a formula typed into an input, a date in a
header cell, blank, swapped meta, filled by the fast writer, by openpyxl, and by
LibreOffice -- plus files whose XML is written in ways the fast path does not read
itself (comments, entities, shared formulas): collect's results (status, every
finding, every score, lines, cached values) must be identical with the fast path on
and off, file by file and for a whole collection with its ledger.
"""

from __future__ import annotations

import datetime as dt
import io
import re
import shutil
import sqlite3
import zipfile
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from test_collect import ROSTER, G, fill

from kpi_excel import _lo
from kpi_excel.collect import Context, Source, check_source, collect
from kpi_excel.fastread import FastBook, open_fast
from kpi_excel.fastwrite import CompiledWorkbook
from kpi_excel.generate import FormGenerator, generate_command
from kpi_excel.read import open_book
from kpi_excel.roster import example_employee

TEMPLATE = "cs_manager_monthly_kpi"


def _key(res: Any) -> tuple:
    res.settle()
    return (
        res.status,
        [(i.kind, i.severity, i.message, i.cell, i.address) for i in res.issues],
        res.identified,
        res.employee_id,
        res.period,
        res.total,
        res.total_in_file,
        res.grade,
        res.coef,
        res.pay,
        res.sections,
        [tuple(vars(line).values()) for line in res.lines],
        [(s.cell, s.kind, s.value) for s in res.scores],
        res.as_typed,
        res.coords,
        res.sheet,
    )


def _check(path: Path, fast: bool) -> Any:
    st = path.stat()
    res = check_source(Source(str(path), path, (), st.st_size, st.st_mtime), Context(fast=fast))
    res.settle()
    return res


def _patch_part(src: Path, dst: Path, part: str, edit: Any) -> Path:
    """A copy of ``src`` with one zip part's text changed by ``edit``."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename == part:
                data = edit(data.decode("utf-8")).encode("utf-8")
            zout.writestr(info, data)
    return dst


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("mixed")
    roster = root / "roster.csv"
    roster.write_text(ROSTER, encoding="utf-8")
    blank = {
        p.stem.rsplit("_", 1)[-1]: p
        for p in generate_command(TEMPLATE, roster, "2026-11", root / "blank")
    }
    d = root / "returned"
    files = {
        "good": fill(blank["E001"], d / "good.xlsx", G),
        "text": fill(blank["E002"], d / "text.xlsx", {**G, "in_sales_rate_actual": "八十"}),
        "weight": fill(blank["E003"], d / "weight.xlsx", G, edits={"E7": 0.1}),
        "total": fill(blank["E004"], d / "total.xlsx", G, edits={"M13": 95}),
        "stale": fill(blank["E007"], d / "stale.xlsx", G, recalc=False),
        "approx": fill(blank["E008"], d / "approx.xlsx", {**G, "in_complaint_timely_late": "约1"}),
        "formula": fill(
            blank["E005"],
            d / "formula.xlsx",
            {**G, "in_sales_rate_actual": "=50+45"},
            computed={"in_sales_rate_actual": 95},
        ),
        "blank": blank["E006"],
    }
    # meta of another employee
    files["swapped"] = fill(blank["E001"], d / "swapped.xlsx", G, edits={"C3": "王五"})
    # forms written (and filled) by the fast writer
    gen = FormGenerator.from_ref(TEMPLATE, "2026-11")
    cw = CompiledWorkbook(gen)
    emp = example_employee(gen.form, employee_id="E009", name="李雷")
    files["fast"] = cw.write(emp, d / "fast.xlsx", {**G, "in_service_years_actual": "十四"})
    files["fast_over"] = cw.write(emp, d / "fast_over.xlsx", {**G, "total": 99})
    # a template with a date header cell (填表日期), filled with a date and its inputs
    dated = FormGenerator.from_ref("cs_dept_manager_monthly_score", "2026-11")
    e2 = example_employee(dated.form, employee_id="E010")
    p2 = dated.write(e2, root / "dated_blank.xlsx")
    answers = {i.name: 1 for i in dated.cf.inputs if i.spec.source == "form" and i.role == "input"}
    files["dated"] = fill(
        p2, d / "dated.xlsx", {**answers, "hdr_input_1": dt.datetime(2026, 12, 3)}
    )
    # XML the fast path leaves to the reference reader
    sheet = "xl/worksheets/sheet1.xml"
    files["comment"] = _patch_part(
        files["good"],
        d / "comment.xlsx",
        sheet,
        lambda x: x.replace("<sheetData>", "<sheetData><!-- x -->", 1),
    )
    files["entity"] = _patch_part(
        files["good"],
        d / "entity.xlsx",
        sheet,
        lambda x: re.sub(r"<v>110</v>", "<v>1&#49;0</v>", x, count=1),
    )
    files["shared_f"] = _patch_part(
        files["good"],
        d / "shared_f.xlsx",
        sheet,
        lambda x: re.sub(r"<f>([^<]*)</f>", r'<f t="shared" ref="A1" si="0">\1</f>', x, count=1),
    )
    files["prefixed"] = _patch_part(
        files["good"],
        d / "prefixed.xlsx",
        sheet,
        lambda x: x.replace(
            'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"',
            'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:x="http://schemas.openxmlformats.org/spreadsheetml/2006/main"',
            1,
        ),
    )
    files["unlocked"] = _patch_part(
        files["good"],
        d / "unlocked.xlsx",
        "xl/styles.xml",
        lambda x: x.replace('<protection locked="0"', '<protection locked="false"'),
    )
    if _lo.available():
        jobs = [
            _lo.Job(
                src=blank["E002"],
                fills={**G, "in_sales_rate_actual": 120},
                read=["total"],
                out_name="lo.xlsx",
            )
        ]
        (res,) = _lo.recalc(jobs, root / "lo")
        if res.error is None:
            files["libreoffice"] = shutil.copy(res.out, d / "libreoffice.xlsx")
    return files


def test_fast_path_is_used(mixed: dict[str, Path]) -> None:
    book = open_fast(mixed["good"].read_bytes(), "good")
    assert isinstance(book, FastBook)
    sheet = book.meta("_meta")["sheet"]
    assert book._scanned(sheet) is not None and book._strings() is not None
    assert book._style_info() is not None
    assert type(book.sheet_cells(sheet)).__name__ == "_FastSheetCells"
    book.close()
    odd = open_fast(mixed["comment"].read_bytes(), "comment")
    assert odd._scanned(sheet) is None  # handed back to the reference reader
    odd.close()


@pytest.mark.parametrize(
    "name",
    [
        "good", "text", "weight", "total", "stale", "approx", "formula", "blank", "swapped",
        "fast", "fast_over", "dated", "comment", "entity", "shared_f", "prefixed", "unlocked",
        "libreoffice",
    ],
)  # fmt: skip
def test_same_result_fast_and_reference(mixed: dict[str, Path], name: str) -> None:
    if name not in mixed:
        pytest.skip(f"{name}: not available here")
    fast, ref = _check(mixed[name], True), _check(mixed[name], False)
    assert _key(fast) == _key(ref)
    assert fast.identified or name in ("prefixed",)


def test_statuses_cover_the_mix(mixed: dict[str, Path]) -> None:
    got = {name: _check(path, True) for name, path in mixed.items()}
    assert got["good"].status == "accepted" and got["good"].total == Decimal("121.95")
    assert got["text"].status == "warning"
    assert {i.kind for i in got["weight"].errors} == {"locked_changed"}
    assert {i.kind for i in got["total"].errors} == {"formula_overwritten"}
    assert {i.kind for i in got["fast_over"].errors} == {"formula_overwritten"}
    assert [i.kind for i in got["stale"].issues] == ["stale_value"]
    assert got["fast"].status == "warning"  # 十四 read as 14


def test_book_answers_match(mixed: dict[str, Path]) -> None:
    """Below collect: every named cell's value, every cell of both sheets as openpyxl
    and as the XML reader sees them, and the meta."""
    for name, path in mixed.items():
        data = path.read_bytes()
        fast, ref = open_fast(data, name), open_book(data, name)
        try:
            assert fast.meta("_meta") == ref.meta("_meta"), name
            for n in ref.names:
                try:
                    want = ref.value(n)
                except KeyError:
                    continue
                assert fast.value(n) == want and type(fast.value(n)) is type(want), (name, n)
            for s in ref.sheets:
                a = [
                    (c.coordinate, c.value, c.protection.locked)
                    for r in fast.sheet_cells(s.name).iter_rows()
                    for c in r
                    if c.value is not None
                ]
                b = [
                    (c.coordinate, c.value, c.protection.locked)
                    for r in ref.sheet_cells(s.name).iter_rows()
                    for c in r
                    if c.value is not None
                ]
                assert a == b, (name, s.name)
                xa = {k: v for k, v in fast.xml_cells(s.name).items() if v != (None, None)}
                xb = {k: v for k, v in ref.xml_cells(s.name).items() if v != (None, None)}
                assert xa == xb, (name, s.name)
        finally:
            fast.close()
            ref.close()


def test_whole_collection_same_with_and_without(mixed: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for name, path in mixed.items():
        shutil.copy(path, folder / f"{name}.xlsx")
    runs = {}
    for fast in (True, False):
        out = tmp_path / f"summary_{fast}.xlsx"
        coll = collect([folder], out=out, fast=fast, workers=1)
        con = sqlite3.connect(out.with_suffix(".sqlite"))
        dump = {
            t: sorted(con.execute(f"SELECT * FROM {t}").fetchall(), key=repr)  # noqa: S608
            for t in ("scores", "anomalies")
        }
        files = sorted(
            con.execute("SELECT sha256, status, reason, total, grade FROM files").fetchall()
        )
        con.close()
        runs[fast] = ([_key(f) for f in sorted(coll.files, key=lambda f: f.path)], dump, files)
    assert runs[True] == runs[False]


def test_fast_writer_output_reads_fast(tmp_path: Path) -> None:
    """Forms of the fast writer (inline strings) are read by the fast path itself."""
    gen = FormGenerator.from_ref(TEMPLATE, "2026-11")
    data = CompiledWorkbook(gen).to_bytes(example_employee(gen.form), G)
    book = open_fast(data, "x")
    sheet = book.meta("_meta")["sheet"]
    assert book._scanned(sheet) is not None
    assert type(book.sheet_cells(sheet)).__name__ == "_FastSheetCells"
    assert book.value("total") == pytest.approx(121.95)
    assert io.BytesIO(data).getbuffer().nbytes > 0


def test_values_as_calamine_gives_them() -> None:
    """Numbers, dates in day-only formats (the edge serials included), other date and
    time formats, booleans, errors and empty results: FastBook.cell answers as
    Book.cell, which reads python-calamine."""
    import xlsxwriter

    buf = io.BytesIO()
    wb = xlsxwriter.Workbook(buf)
    ws = wb.add_worksheet("s")
    formats = ["yyyy-mm-dd", "yyyy\\-mm\\-dd", "yyyy/m/d", 14, "m/d/yyyy", "h:mm", "[h]:mm",
               'yyyy"年"m"月"d"日"', 57, "0.00", "0%", "General", "0.00E+00"]  # fmt: skip
    values = [46357, 46357.25, 60, 61, 1, 0, 2958465, 2958466, -3]
    for r, code in enumerate(formats):
        f = wb.add_format({"num_format": code})
        for c, v in enumerate(values):
            ws.write_number(r, c, v, f)
    r = len(formats)
    ws.write_boolean(r, 0, True)
    ws.write_formula(r, 1, "=1/0", None, "#DIV/0!")
    ws.write_formula(r, 2, '=""', None, "")
    ws.write_string(r, 3, "文字 & <标记>")
    ws.write_formula(r, 4, '="x"', None, "x")
    wb.close()
    data = buf.getvalue()
    fast, ref = open_fast(data, "t"), open_book(data, "t")
    try:
        assert fast._ready("s") is not None
        for row in range(1, r + 2):
            for col in range(1, len(values) + 2):
                got, want = fast.cell("s", row, col), ref.cell("s", row, col)
                assert got == want and type(got) is type(want), (row, col, got, want)
    finally:
        fast.close()
        ref.close()


def test_spooled_results_read_back(mixed: dict[str, Path]) -> None:
    from kpi_excel.fastread import SpooledDict, SpooledList, spool_results

    results = [_check(mixed[n], True) for n in ("good", "text", "blank")]
    want = [(list(r.lines), list(r.scores), dict(r.as_typed), dict(r.coords)) for r in results]
    kept = spool_results(iter(results))
    assert isinstance(kept[0].lines, SpooledList) and isinstance(kept[0].as_typed, SpooledDict)
    got = [(list(r.lines), list(r.scores), dict(r.as_typed), dict(r.coords)) for r in kept]
    assert got == want
    assert len(kept[0].lines) == len(want[0][0]) and kept[0].lines[0] == want[0][0][0]
    import pickle

    again = pickle.loads(pickle.dumps(kept[0]))
    assert again.lines == want[0][0] and type(again.lines) is list


def test_openpyxl_rules_restated_exactly() -> None:
    """The number-format and serial-date rules fastread restates (to avoid importing
    openpyxl in every worker) are openpyxl's own."""
    import random

    import openpyxl.styles.numbers as numbers
    import openpyxl.utils.datetime as opdt

    from kpi_excel import fastread as fr

    assert fr._OP_BUILTIN_FORMATS == numbers.BUILTIN_FORMATS
    assert fr._OP_STRIP.pattern == numbers.STRIP_RE.pattern
    assert fr._OP_TIMEDELTA.pattern == numbers.TIMEDELTA_RE.pattern
    assert fr._OP_TIMEDELTA.flags == numbers.TIMEDELTA_RE.flags
    codes = [*numbers.BUILTIN_FORMATS.values(), "yyyy-mm-dd", 'yyyy"年"m"月"d"日"',
             "[$-804]yyyy/m/d", "[h]:mm", "0.00_ ", "[Red]0", "\\d0", "_d0", "[ss].00",
             "mm:ss;@", "General;yyyy", None, "", "0%"]  # fmt: skip
    for code in codes:
        assert fr._is_date_format(code) == numbers.is_date_format(code), code
        assert fr._is_timedelta_format(code) == numbers.is_timedelta_format(code), code
    rng = random.Random(7)
    values = [0, 0.5, 0.999999, 1, 1.5, 59, 59.9, 60, 61, 45000, 45000.25, 2958465, -1, -0.5]
    values += [rng.uniform(-100, 3e6) for _ in range(2000)]
    values += [rng.randint(0, 100000) for _ in range(500)]
    for v in values:
        for td in (False, True):
            try:
                a: object = fr._from_excel(v, td)
            except (OverflowError, ValueError) as e:
                a = type(e)
            try:
                b: object = opdt.from_excel(v, opdt.WINDOWS_EPOCH, timedelta=td)
            except (OverflowError, ValueError) as e:
                b = type(e)
            assert a == b and type(a) is type(b), (v, td, a, b)
