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
import hashlib
import io
import random
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


@pytest.fixture(autouse=True, params=["c", "python"])
def loops(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test here runs with the per-cell loops in C (kpi_excel._speedups) and
    with their Python reference, the views kept from other runs forgotten."""
    from kpi_excel import fastread as fr

    if request.param == "c" and fr._C is None:
        pytest.skip("kpi_excel._speedups is not built here")
    monkeypatch.setattr(fr, "SPEEDUPS", request.param == "c")
    fr._VIEWS.clear()
    return str(request.param)


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
        [tuple(line) for line in res.lines],
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
    from kpi_excel.meta import cell_line, locked_cells_from_openpyxl

    for name, path in mixed.items():
        data = path.read_bytes()
        fast, ref = open_fast(data, name), open_book(data, name)
        try:
            # a digest the caller has is taken as it is (check_source hashes once)
            assert fast.sha256 == ref.sha256 == hashlib.sha256(data).hexdigest()
            given = open_fast(data, name, sha256=ref.sha256)
            assert given.sha256 == ref.sha256
            given.close()
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
                for coord, _v, _locked in b:
                    got = fast.sheet_cells(s.name).value(coord)
                    want = ref.sheet_cells(s.name).value(coord)
                    assert got == want and type(got) is type(want), (name, s.name, coord)
                # the locked cells the fingerprint covers, gathered as the scan is read
                locked = fast.sheet_cells(s.name).locked_cells()
                assert locked == locked_cells_from_openpyxl(ref.sheet_cells(s.name)), name
                # and their lines of the fingerprint text, kept per piece
                want_lines = [ln for ln in (cell_line(c, v) for c, v in locked) if ln]
                assert fast.sheet_cells(s.name).fingerprint_lines() == want_lines, name
                encoded = fast.sheet_cells(s.name).fingerprint_bytes()
                if type(fast.sheet_cells(s.name)).__name__ == "_FastSheetCells":
                    assert encoded == [ln.encode() for ln in want_lines], name
                else:  # the reference reader's cells (odd XML): the text is encoded whole
                    assert encoded is None, name
                assert ref.sheet_cells(s.name).fingerprint_lines() == want_lines, name
                assert [type(v) for _c, v in locked] == [
                    type(v) for _c, v in ref.sheet_cells(s.name).locked_cells()
                ]
                xa = {k: v for k, v in fast.xml_cells(s.name).items() if v != (None, None)}
                xb = {k: v for k, v in ref.xml_cells(s.name).items() if v != (None, None)}
                assert xa == xb, (name, s.name)
        finally:
            fast.close()
            ref.close()


def _meta_book(rows: list[tuple[int, int, object]]) -> bytes:
    """A workbook with a form sheet and a ``_meta`` sheet holding ``rows`` as
    (row, column, value), written by openpyxl."""
    import openpyxl

    wb = openpyxl.Workbook()
    wb.active.title = "表"
    wb.active["A1"] = "x"
    ws = wb.create_sheet("_meta")
    for r, c, v in rows:
        ws.cell(row=r, column=c, value=v)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


META_LAYOUTS: dict[str, list[tuple[int, int, object]]] = {
    "plain": [(1, 1, "key"), (1, 2, "value"), (2, 1, "a"), (2, 2, "1"), (3, 1, "b"), (3, 2, "x")],
    "continued over columns": [(2, 1, "yaml"), (2, 2, "part one "), (2, 3, "two "), (2, 4, "three")],
    "a gap between parts": [(2, 1, "k"), (2, 2, "a"), (2, 4, "c"), (3, 1, "next"), (3, 3, "v")],
    "numbers and booleans": [(2, 1, "n"), (2, 2, 42), (3, 1, "f"), (3, 2, 2.5), (3, 3, 7),
                             (4, 1, "t"), (4, 2, True), (5, 1, 123), (5, 2, "numeric key")],
    "no key in column A": [(2, 2, "orphan"), (2, 3, "more"), (3, 1, "after"), (3, 2, "ok")],
    "a key without value": [(2, 1, "empty"), (3, 1, "last")],
    "duplicate keys": [(2, 1, "k"), (2, 2, "first"), (3, 1, "other"), (3, 2, "o"), (4, 1, "k"), (4, 2, "second")],
    "header row only": [(1, 1, "key"), (1, 2, "value")],
    "rows far apart": [(2, 1, "a"), (2, 2, "1"), (900, 1, "z"), (900, 5, "far")],
    "first row keyed": [(1, 1, "not read"), (1, 2, "v"), (2, 1, "read"), (2, 2, "w")],
}  # fmt: skip


@pytest.mark.parametrize("layout", list(META_LAYOUTS))
def test_meta_rows_read_as_the_reference(layout: str) -> None:
    """``FastBook.meta`` (one pass over the scan) gives what ``Book.meta`` gives (the
    cells sorted by row and column), on the meta sheet's every shape: values continued
    over columns and with gaps, numbers, booleans, a numeric key, rows without a key
    in column A, keys without values, duplicate keys, the header row."""
    data = _meta_book(META_LAYOUTS[layout])
    fast, ref = open_fast(data, layout), open_book(data, layout)
    try:
        assert fast.meta("_meta") == ref.meta("_meta")
        assert list(fast.meta("_meta").items()) == list(ref.meta("_meta").items())
        assert fast._scans.get("_meta") is not None  # the scan answered, not the reference
    finally:
        fast.close()
        ref.close()


def test_names_located_alike_whatever_came_before(mixed: dict[str, Path], tmp_path: Path) -> None:
    """Where a form's names point is worked out once per workbook.xml and given again
    for the next form whose names are the very same objects (``_locate_names``): every
    file, checked after any other, gets exactly what it gets checked first, names
    deleted, pointing elsewhere, moved or broken included."""
    from kpi_excel import collect as co

    book = "xl/workbook.xml"
    variants = {
        "name_deleted": _patch_part(
            mixed["good"],
            tmp_path / "name_deleted.xlsx",
            book,
            lambda x: re.sub(
                r'<definedName name="in_sales_rate_actual">[^<]*</definedName>', "", x
            ),
        ),
        "name_elsewhere": _patch_part(
            mixed["good"],
            tmp_path / "name_elsewhere.xlsx",
            book,
            lambda x: re.sub(r'(<definedName name="total">)[^<]*', r"\1_meta!$B$2", x),
        ),
        "name_broken": _patch_part(
            mixed["good"],
            tmp_path / "name_broken.xlsx",
            book,
            lambda x: re.sub(r'(<definedName name="grade">)([^<]*)', r"\1#REF!", x),
        ),
        "name_moved": _patch_part(
            mixed["good"],
            tmp_path / "name_moved.xlsx",
            book,
            lambda x: re.sub(r'(<definedName name="coef">[^<]*)\$15', r"\g<1>$16", x),
        ),
    }
    variants["deleted_and_moved"] = _patch_part(
        variants["name_moved"],
        tmp_path / "deleted_and_moved.xlsx",
        book,
        lambda x: re.sub(r'<definedName name="in_sales_rate_actual">[^<]*</definedName>', "", x),
    )
    files = {**mixed, **variants}
    first = {}
    for name, path in files.items():
        co._NAMES_SEEN.clear()
        first[name] = _key(_check(path, fast=True))
    kinds = {i[0] for name in variants for i in first[name][1]}
    assert {"name_missing", "name_moved", "rows_moved"} <= kinds
    # a file that cannot be read by its names says so, not that rows moved
    both = [i[0] for i in first["deleted_and_moved"][1]]
    assert "name_missing" in both and "rows_moved" not in both
    worked = []
    real = co._locate_names_now

    def counted(*args: Any) -> Any:
        worked.append(1)
        return real(*args)

    order = list(files) * 2
    random.Random(3).shuffle(order)
    co._locate_names_now = counted  # type: ignore[assignment]
    try:
        for name in order:
            assert _key(_check(files[name], fast=True)) == first[name], name
    finally:
        co._locate_names_now = real  # type: ignore[assignment]
    assert len(worked) < len(order)  # some forms were located by the last one's names

    # the names recorded at generation count too: other ones, another answer
    from types import MappingProxyType

    data = mixed["good"].read_bytes()
    fast = open_fast(data, "good")
    try:
        got = co._check_meta(co.FileResult("good", 0, 0.0), fast, Context(fast=True))
        assert got is not None
        meta, tpl = got
        then = co._names_then(meta["names_json"])
        sheet = meta["sheet"]
        other = MappingProxyType({**then, "coef": then["coef"].replace("$15", "$99")})
        a = co._locate_names(fast, tpl.cf, sheet, then)
        b = co._locate_names(fast, tpl.cf, sheet, other)
        assert [f[0] for f in a[1]] == [] and [f[0] for f in b[1]] == ["rows_moved"]
        assert co._locate_names(fast, tpl.cf, sheet, then) == a
        # and the sheet the form is on: names pointing at another one do not count
        c = co._locate_names(fast, tpl.cf, "另一张表", then)
        assert not c[2] and {f[0] for f in c[1]} == {"name_moved"}
        assert co._locate_names(fast, tpl.cf, sheet, then) == a
    finally:
        fast.close()


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
    from kpi_excel.spool import SpooledDict, SpooledList, pack, spool_results

    results = [_check(mixed[n], True) for n in ("good", "text", "blank", "good")]
    want = [(list(r.lines), list(r.scores), dict(r.as_typed), dict(r.coords)) for r in results]
    assert want[0][0] and want[0][1] and want[0][2] and want[0][3]
    # as from a worker: packed there, sent pickled, spooled here as bytes
    import pickle

    results[3] = pickle.loads(pickle.dumps(pack(results[3])))
    assert results[3].lines == [] and results[3].scores == []
    seen: list[object] = []
    kept = spool_results(iter(results), seen.append)
    assert seen == kept
    assert isinstance(kept[0].lines, SpooledList) and isinstance(kept[0].as_typed, SpooledDict)
    got = [(list(r.lines), list(r.scores), dict(r.as_typed), dict(r.coords)) for r in kept]
    assert got == want
    assert len(kept[0].lines) == len(want[0][0]) and kept[0].lines[0] == want[0][0][0]
    assert len(kept[3].scores) == len(want[3][1]) and isinstance(kept[3].coords, SpooledDict)
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


# -- the sheet scanner: pieces kept by their bytes, against the whole-sheet reading ----


def _reference_scan(data: bytes) -> dict[str, tuple] | str:
    """The sheet reading the piece scanner replaced: the whole part checked (_body),
    the whole <sheetData> matched against the grammar, then every cell found by
    _ANY_CELL. Cells as tuples, or "odd"."""
    from kpi_excel import fastread as fr

    try:
        xml = fr._body(data, "worksheet")
        start = xml.find("<sheetData")
        if start < 0:
            raise fr._Odd
        if xml.startswith("<sheetData/>", start):
            return {}
        if not xml.startswith("<sheetData>", start):
            raise fr._Odd
        start += len("<sheetData>")
        end = xml.find("</sheetData>", start)
        if end < 0 or xml.find("<sheetData", end) >= 0:
            raise fr._Odd
        if fr._SHEETDATA.fullmatch(xml, start, end) is None:
            raise fr._Odd
        cells: dict[str, tuple] = {}
        last_row, last_col = 0, ""
        for mt in fr._ANY_CELL.finditer(xml, start, end):
            col, row, s_, t, f, v, inline, extra, inner = mt.groups()
            r = int(row)
            if r < last_row or (r == last_row and (len(col), col) <= (len(last_col), last_col)):
                raise fr._Odd
            last_row, last_col = r, col
            s = int(s_) if s_ else 0
            t = t or "n"
            if inner is not None:
                if extra:
                    if s_ or t != "n":
                        raise fr._Odd
                    t, s = fr._cell_attrs(extra)
                v_text, f_text, inline_text = fr._inner(inner, t)
                cells[col + row] = (t, s, v_text, f_text, inline_text, "&#" in inner)
            elif inline is not None:
                if "_x" in inline and fr._ESCAPED.search(inline):
                    raise fr._Odd
                cells[col + row] = (t, s, None, None, inline, False)
            else:
                if t in ("s", "str") and v and "_x" in v and fr._ESCAPED.search(v):
                    raise fr._Odd
                cells[col + row] = (t, s, v, f, None, False)
        return cells
    except fr._Odd:
        return "odd"


def _fast_scan(data: bytes) -> dict[str, tuple] | str:
    from kpi_excel import fastread as fr

    try:
        return {coord: tuple(raw) for coord, raw in fr._scan(fr._sheet_data(data)).cells.items()}
    except fr._Odd:
        return "odd"


def _forget_pieces() -> None:
    from kpi_excel import fastread as fr

    fr._PIECES.clear()
    fr._PIECES_NEW.clear()
    fr._PLAIN_OUTSIDE.clear()


_HEAD = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
    'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
    '<dimension ref="A1:C3"/>'
)
_TAIL = '<pageMargins left="0.7" right="0.7" top="0.75" bottom="0.75"/></worksheet>'
_ROWS = (
    '<row r="1" spans="1:3"><c r="A1" s="1" t="s"><v>0</v></c><c r="B1" s="1"/>'
    '<c r="C1" s="2"><f>SUM(A2:A3)</f><v>3</v></c></row>'
    '<row r="2" spans="1:3" ht="20" customHeight="1"><c r="A2"><v>1</v></c>'
    '<c r="B2" s="3" t="inlineStr"><is><t>高超</t></is></c>'
    '<c r="C2" s="3" t="str"><f>A1&amp;"x"</f><v>ax</v></c></row>'
    '<row r="3"/><row r="4"><c r="A4"><v>2</v></c><c r="C4" t="e"><f>1/0</f><v>#DIV/0!</v></c>'
    "</row>"
)

#: (name, sheetData content, whether the piece scanner may decline where the whole-sheet
#: reading did not: only where it is stricter on purpose)
_SHEET_CASES: list[tuple[str, str, bool]] = [
    ("plain", _ROWS, False),
    ("spaces between", _ROWS.replace("</c><c", "</c>\n  <c").replace("</row><row", "</row>\n<row"), False),
    ("empty", "", False),
    ("only empty rows", '<row r="1"/><row r="2"></row>\n', False),
    ("empty rows between", _ROWS.replace('<row r="3"/>', '<row r="3"/><row r="5"> </row>'), False),
    ("empty first rows", '<row r="1"/>' + _ROWS.replace('r="1" spans', 'r="1" x="1" spans'), False),
    ("stray text between cells", _ROWS.replace('</c><c r="B1"', '</c>x<c r="B1"'), False),
    ("stray text after a row", _ROWS.replace('</row><row r="2"', '</row>x<row r="2"'), False),
    ("stray text at the end", _ROWS + "x", False),
    ("stray text at the start", "x" + _ROWS, False),
    ("stray element", _ROWS.replace('</row><row r="2"', '</row><foo/><row r="2"'), False),
    ("cell outside a row", _ROWS + '<c r="A9"><v>1</v></c>', False),
    ("cell between rows", _ROWS.replace('</row><row r="2"', '</row><c r="D1"/></row><row r="2"'), False),
    ("cell after the rows", _ROWS + '<c r="A9"><v>1</v></c></row>', False),
    ("row not closed", _ROWS[: -len("</row>")], False),
    ("row closed twice", _ROWS.replace("</row>", "</row></row>", 1), False),
    ("row in a row", _ROWS.replace('<row r="2"', '<row r="9"><row r="2"', 1), False),
    ("row closed in a cell", _ROWS.replace("<v>0</v>", "<v>0</v></row>", 1), False),
    ("cell not closed", _ROWS.replace("<v>1</v></c>", "<v>1</v>", 1), False),
    ("cell start in a row attribute", _ROWS.replace('<row r="3"/>', "<row r=\"3\" x='<c r=\"B3\"'/>"), False),
    ("cell start in a value", _ROWS.replace("<v>1</v>", '<v>1<c r="B2"</v>'), False),
    ("cell start in a text", _ROWS.replace("高超", '高<c r="B3"/>超'), False),
    ("cell start in a formula", _ROWS.replace("SUM(A2:A3)", 'SUM(<c r="D1">)'), False),
    ("cell start in rich text properties", _ROWS.replace(
        "<is><t>高超</t></is>", '<is><r><rPr><c r="X"/></rPr><t>高超</t></r></is>'), True),
    ("rich text", _ROWS.replace(
        "<is><t>高超</t></is>", '<is><r><rPr><b/><sz val="11"/></rPr><t>高</t></r><r><t xml:space="preserve"> 超</t></r></is>'), False),
    ("phonetic run", _ROWS.replace("<is><t>高超</t></is>", "<is><t>高超</t><rPh sb=\"0\" eb=\"1\"><t>a</t></rPh></is>"), False),
    ("escape in a text", _ROWS.replace("高超", "a_x000D_b"), False),
    ("escape in a value", _ROWS.replace("<v>ax</v>", "<v>a_x000D_</v>"), False),
    ("x005F in a value", _ROWS.replace("<v>ax</v>", "<v>ax005F_</v>"), False),
    ("reference in a value", _ROWS.replace("<v>1</v>", "<v>&#49;</v>"), False),
    ("entities in a text", _ROWS.replace("高超", "a &amp; b &lt;c&gt; &quot;&apos;"), False),
    ("carriage return in a text", _ROWS.replace("高超", "a\r\nb\rc"), False),
    ("bad reference", _ROWS.replace("<v>1</v>", "<v>&#0;</v>"), False),
    ("unknown entity", _ROWS.replace("高超", "&nbsp;"), False),
    ("shared formula", _ROWS.replace("<f>SUM(A2:A3)</f>", '<f t="shared" ref="C1:C2" si="0">SUM(A2:A3)</f>'), False),
    ("array formula", _ROWS.replace("<f>SUM(A2:A3)</f>", '<f t="array" ref="C1">SUM(A2:A3)</f>'), False),
    ("aca formula", _ROWS.replace("<f>SUM(A2:A3)</f>", '<f aca="false">SUM(A2:A3)</f>'), False),
    ("attributes in another order", _ROWS.replace('s="1" t="s"', 't="s" s="1"'), False),
    ("more attributes", _ROWS.replace('<c r="A2">', '<c r="A2" cm="1" s="2">'), False),
    ("s and t before others", _ROWS.replace('<c r="A2">', '<c r="A2" s="2" t="n" cm="1">'), False),
    ("t only", _ROWS.replace('<c r="A2">', '<c r="A2" t="n">'), False),
    ("style not a number", _ROWS.replace('<c r="A2">', '<c r="A2" cm="1" s="x">'), False),
    ("single-quoted attribute", _ROWS.replace('<c r="A2">', "<c r=\"A2\" s='2'>"), False),
    ("space before the end", _ROWS.replace('<c r="B1" s="1"/>', '<c r="B1" s="1" />'), False),
    ("empty cell written long", _ROWS.replace('<c r="B1" s="1"/>', '<c r="B1" s="1"></c>'), False),
    ("empty value", _ROWS.replace("<v>1</v>", "<v></v>"), False),
    ("value closed short", _ROWS.replace("<v>1</v>", "<v/>"), False),
    ("value with space", _ROWS.replace("<v>1</v>", "<v >1</v>"), False),
    ("boolean", _ROWS.replace('<c r="A2"><v>1</v>', '<c r="A2" t="b"><v>1</v>'), False),
    ("ISO date", _ROWS.replace('<c r="A2"><v>1</v>', '<c r="A2" t="d"><v>2026-11-01</v>'), False),
    ("out of order", _ROWS.replace('<c r="A2"><v>1</v></c>', '<c r="D2"><v>1</v></c>'), False),
    ("duplicate", _ROWS.replace('<c r="B2" s="3"', '<c r="A2" s="3"'), False),
    ("rows out of order", _ROWS.replace('<c r="A4">', '<c r="A1">'), False),
    ("empty cells out of order", _ROWS.replace('<c r="B1" s="1"/>', '<c r="B1" s="1"/><c r="A1" s="1"/>'), True),
    ("empty duplicate", _ROWS.replace('<c r="B1" s="1"/>', '<c r="B1" s="1"/><c r="B1" s="1"/>'), True),
    ("leading zero", _ROWS.replace('<c r="A2">', '<c r="A02">'), True),
    ("row zero", _ROWS.replace('<c r="A1" ', '<c r="A0" ').replace('<c r="B1" ', '<c r="B0" '), True),
    ("lower-case reference", _ROWS.replace('<c r="A2">', '<c r="a2">'), False),
    ("four letters", _ROWS.replace('<c r="C4"', '<c r="AAAA4"'), False),
    ("no reference", _ROWS.replace('<c r="A2">', "<c>"), False),
    ("reference last", _ROWS.replace('<c r="A2">', '<c s="0" r="A2">'), False),
    ("namespace in a cell", _ROWS.replace('<c r="A2">', '<c r="A2" xmlns="urn:x">'), False),
    ("main namespace in a value", _ROWS.replace(
        "<v>ax</v>", '<v>="http://schemas.openxmlformats.org/spreadsheetml/2006/main"</v>'), False),
    ("xmlns in a value", _ROWS.replace("<v>ax</v>", "<v>xmlns=1</v>"), False),
    ("xmlns in a text", _ROWS.replace("高超", "xmlns=x"), False),
    ("comment", _ROWS.replace("</row>", "</row><!-- x -->", 1), False),
    ("processing instruction", _ROWS.replace("</row>", "</row><?x y?>", 1), False),
    ("CDATA", _ROWS.replace("高超", "<![CDATA[x]]>"), False),
    ("unicode space between", _ROWS.replace("</c><c", "</c>\u3000<c", 1), False),
    ("text in a value with quotes", _ROWS.replace("<v>ax</v>", '<v>"a" > b</v>'), False),
]  # fmt: skip


def _sheet_part(content: str, head: str = _HEAD, tail: str = _TAIL) -> bytes:
    return (head + "<sheetData>" + content + "</sheetData>" + tail).encode("utf-8")


@pytest.mark.parametrize("case", _SHEET_CASES, ids=[c[0] for c in _SHEET_CASES])
def test_scan_equals_whole_sheet_reading(case: tuple[str, str, bool]) -> None:
    """Cut into pieces, kept or not: the cells the whole-sheet reading gives, or the
    reference reader's answer (odd) where it declined."""
    name, content, stricter = case
    data = _sheet_part(content)
    want = _reference_scan(data)
    for warm in (False, True, True):  # first sight, then pieces seen before (and kept)
        if not warm:
            _forget_pieces()
        got = _fast_scan(data)
        if stricter:
            assert got == "odd" and want != "odd", name
        else:
            assert got == want, (name, warm)


def test_scan_cases_are_meaningful() -> None:
    """The cases above cover both verdicts (else they would prove little)."""
    verdicts = {name: _reference_scan(_sheet_part(c)) == "odd" for name, c, _ in _SHEET_CASES}
    assert not verdicts["plain"] and not verdicts["rich text"] and not verdicts["empty"]
    assert verdicts["stray text between cells"] and verdicts["cell start in a row attribute"]
    assert sum(verdicts.values()) > 30 and sum(not v for v in verdicts.values()) > 15


def test_scan_outside_sheet_data() -> None:
    """What the whole-part check refuses before or after <sheetData> is refused."""
    m = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
    cases = {
        "plain": (_HEAD, _TAIL),
        "comment after": (_HEAD, "<!-- x -->" + _TAIL),
        "comment before": (_HEAD + "<!-- x -->", _TAIL),
        "pi before the root": ('<?xml version="1.0"?><?x y?>' + _HEAD[55:], _TAIL),
        "latin-1": (_HEAD.replace("UTF-8", "ISO-8859-1"), _TAIL),
        "no declaration": (_HEAD[56:], _TAIL),
        "BOM": ("\ufeff" + _HEAD, _TAIL),
        "prefixed root": (_HEAD.replace("<worksheet xmlns=", "<x:worksheet xmlns:x="), _TAIL),
        "xmlns later": (_HEAD, f'<extLst xmlns="{m}"/>' + _TAIL),
        "main bound to a prefix later": (_HEAD, f'<extLst xmlns:x="{m}"/>' + _TAIL),
        "second sheetData": (_HEAD, "<sheetData/>" + _TAIL),
        "sheetData in the root tag": (
            _HEAD.replace("<dimension", '<dimension x="<sheetData'),
            _TAIL,
        ),
        "root not worksheet": (_HEAD.replace("<worksheet ", "<chartsheet "), _TAIL),
    }
    for name, (head, tail) in cases.items():
        for content in (_ROWS, ""):
            data = _sheet_part(content, head, tail)
            for _ in range(2):  # the verdict on the outside is kept
                assert _fast_scan(data) == _reference_scan(data), name
    bad = _sheet_part(_ROWS).replace("高超".encode(), b"\xff\xfe")
    assert _fast_scan(bad) == _reference_scan(bad) == "odd"
    bad_tail = _sheet_part(_ROWS, tail="<x>\xff</x>" + _TAIL).replace(b"\xc3\xbf", b"\xff")
    assert _fast_scan(bad_tail) == _reference_scan(bad_tail) == "odd"
    self_closed = (_HEAD + "<sheetData/>" + _TAIL).encode()
    assert _fast_scan(self_closed) == _reference_scan(self_closed) == {}


#: values and cells that fill a piece's hole, for the readers of filled pieces (also
#: tests/test_speedups.py, which compares the C reader with the Python one on them)
FILLED_VALUES = [
    "", "1", "12.5", "-3E+2", "x", "a b", "高超", '"q" > r', "a_x000D_", "x005F_", "_x00",
    "&amp;", "&#49;", "a\rb", "xmlns=", "http://schemas.openxmlformats.org/spreadsheetml/2006/main",
    "#DIV/0!", "TRUE",
]  # fmt: skip
FILLED_CELLS = [
    'A1"><v>{}</v></c>',
    'A1" s="2"><v>{}</v></c>',
    'A1" s="2" t="s"><v>{}</v></c>',
    'A1" t="str"><f>A2&amp;"x"</f><v>{}</v></c>',
    'A1" s="3" t="str"><f>B1</f><v>{}</v></c></row><row r="2">',
    'A1" t="e"><f>1/0</f><v>{}</v></c></row>',
    'A1" cm="1" s="2"><f aca="false">X</f><v>{}</v></c>',
    'A1" s="1" t="inlineStr"><is><t>{}</t></is></c>',
    'A1" t="inlineStr"><is><t xml:space="preserve">{}</t></is></c>',
    'A1" t="inlineStr"><is><r><t>{}</t></r><r><rPr><b/></rPr><t></t></r></is></c>',
    'A1" t="inlineStr"><is><r><t>{}</t></r><r><t>more</t></r></is></c>',
    'A1" t="inlineStr"><is><t>{}</t><rPh><t>a</t></rPh></is></c>',
    'A1" t="inlineStr"><v>{}</v><is><t>{}</t></is></c>',
    'A1" t="n"><v>{}</v></c><x/>',
    'A1"/><v>{}</v>',
    'A1" s="1" t="s"><v>{}</v></c></row>  <row r="3"/>\n<row r="4" spans="1:2">',
]


def test_filled_pieces_read_as_whole_pieces() -> None:
    """A piece read from its kept form (value or inline text left out) reads exactly
    as the piece itself, or is read whole; checked over many values and cells."""
    from kpi_excel import fastread as fr

    filled = 0
    for cell in FILLED_CELLS:
        for value in FILLED_VALUES:
            text = cell.format(value, value)
            for piece in (text.encode(), text.encode().replace(b"x", b"\xff")):
                fr._PIECES.clear()
                fr._PIECES_NEW.clear()
                try:
                    want: object = fr._read_cell_piece(piece)
                except fr._Odd:
                    want = "odd"
                for _ in range(2):  # the form with the text left out read, then kept
                    got = fr._read_filled(piece)
                    if got is not None:
                        filled += 1
                        assert got == want, (piece, got, want)
                        assert type(got[2]) is fr._Raw
    assert filled > 100


def test_pieces_kept_across_files(mixed: dict[str, Path]) -> None:
    """Two files sharing most pieces, read one after the other (pieces and views kept
    from the first): each answers as the reference reader does for it."""
    from kpi_excel import fastread as fr

    names = ["good", "text", "total", "fast", "good"]
    _forget_pieces()
    fr._VIEWS.clear()
    for name in names:
        data = mixed[name].read_bytes()
        fast, ref = open_fast(data, name), open_book(data, name)
        try:
            assert fast.meta("_meta") == ref.meta("_meta"), name
            sheet = ref.meta("_meta")["sheet"]
            assert fast._scanned(sheet) is not None
            for n, at in ref.names.items():
                if at.sheet == sheet and not at.problem:
                    got, want = fast.value(n), ref.value(n)
                    assert got == want and type(got) is type(want), (name, n)
            a = [
                (c.coordinate, c.value, c.protection.locked)
                for (c,) in fast.sheet_cells(sheet).iter_rows()
            ]
            b = [
                (c.coordinate, c.value, c.protection.locked)
                for r in ref.sheet_cells(sheet).iter_rows()
                for c in r
                if c.value is not None
            ]
            assert [x for x in a if x[1] is not None] == b, name
        finally:
            fast.close()
            ref.close()
    assert fr._PIECES  # pieces seen in more than one file were kept


def test_kept_pieces_are_immutable(mixed: dict[str, Path]) -> None:

    book = open_fast(mixed["good"].read_bytes(), "good")
    sheet = book.meta("_meta")["sheet"]
    scan = book._scanned(sheet)
    assert scan is not None
    raw = scan.entries[0][2]
    with pytest.raises(AttributeError):
        raw.v = "1"  # type: ignore[misc]
    (cell,) = next(iter(book.sheet_cells(sheet).iter_rows()))
    with pytest.raises(AttributeError):
        cell.value = 1
    assert all(type(e) is tuple for e in scan.entries)
    book.close()


def test_piece_memo_is_bounded() -> None:
    from kpi_excel import fastread as fr

    _forget_pieces()
    for k in range(fr._PIECES_NEW_MAX * 3):
        content = f'<row r="{k + 1}"><c r="A{k + 1}"><v>{k}</v></c><c r="B{k + 1}" s="1"/></row>'
        assert _fast_scan(_sheet_part(content)) != "odd"
    assert len(fr._PIECES_NEW) <= fr._PIECES_NEW_MAX
    assert len(fr._PIECES) <= fr._PIECES_MAX
    long = "x" * (fr._PIECE_KEPT_MAX + 1)
    for _ in range(3):
        assert (
            _fast_scan(
                _sheet_part(f'<row r="1"><c r="A1" t="inlineStr"><is><t>{long}</t></is></c></row>')
            )
            != "odd"
        )
    assert not any(len(p) > fr._PIECE_KEPT_MAX for p in [*fr._PIECES, *fr._PIECES_NEW])


def test_collect_leaves_out_only_what_recalc_uses(mixed: dict[str, Path]) -> None:
    """collect's checks (Context(for_recalc=False)) give every result check_source
    gives, without what only recalc shows: the coordinates and values recomputed as
    typed, each line's inputs and rule text."""
    for name, path in mixed.items():
        st = path.stat()
        src = Source(str(path), path, (), st.st_size, st.st_mtime)
        full = check_source(src, Context())
        lean = check_source(src, Context(for_recalc=False))
        assert lean.as_typed == {} and lean.coords == {}, name
        assert all(ln.inputs == [] and ln.rule == "" for ln in lean.lines), name
        assert [ln._replace(inputs=[], rule="") for ln in full.lines] == lean.lines, name
        lean.as_typed, lean.coords, lean.lines = full.as_typed, full.coords, full.lines
        assert _key(lean) == _key(full), name
