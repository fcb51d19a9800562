"""Macro-enabled forms and summaries: the VBA project, the buttons, the entry points.

Three kinds of proof, as far as Linux goes (Excel itself cannot run here):

1. the built file: olevba extracts exactly the modules of ``macros/``, the document
   modules match the workbook's code names, the content type is macro-enabled;
2. the wiring: LibreOffice headless opens a built file in which a stub ``RunPython``
   stands in for xlwings' (LibreOffice cannot run xlwings' own VBA), lists each
   button with the macro bound to it, runs that macro through UNO, and the stub
   records the exact Python call;
3. the entry points: run against a fake xlwings book (``tests/fakebook.py``), they
   give the same scores as ``kpi-excel recalc`` / ``score.evaluate`` and write the
   same summary rows as ``kpi-excel collect``.
"""

from __future__ import annotations

import ast
import io
import random
import re
import zipfile
from decimal import Decimal
from pathlib import Path

import openpyxl
import pytest
import xlsxwriter
from fakebook import FakeBook, ProtectedCellError, WrongPasswordError
from oletools.olevba import VBA_Parser
from parity import random_values

from kpi_excel import _lo, buttons, vba
from kpi_excel.buttons import SummarySettings, collect_summary, recalc_form
from kpi_excel.errors import FormError, KpiExcelError
from kpi_excel.generate import FormGenerator
from kpi_excel.meta import canonical
from kpi_excel.render import render
from kpi_excel.roster import example_employee, initial_values
from kpi_excel.score import evaluate

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = sorted(p.stem for p in (ROOT / "workbook_templates").glob("*.yaml"))
TEMPLATE = "cs_manager_monthly_kpi"

PERIODS = {"monthly": "2026-11", "quarterly": "2026-Q4", "yearly": "2026"}


def _kind(template: str) -> str:
    from kpi_excel.spec.load import find_template, load_form

    return load_form(find_template(template)).period


FORM_CALL = "import kpi_excel.buttons as b; b.recalc_form()"
SUMMARY_CALL = "import kpi_excel.buttons as b; b.collect_summary()"

# Stands in for xlwings' RunPython: records the exact Python call in the first status
# line (unlocked, so writable on the protected form sheet). Valid VBA for Excel too.
STUB = vba.Module(
    "KpiStub",
    'Attribute VB_Name = "KpiStub"\r\n'
    "Option Explicit\r\n"
    "Public Sub RunPython(cmd As String)\r\n"
    '    ThisWorkbook.Names("kpi_status").RefersToRange.Cells(1, 1).Value = cmd\r\n'
    "End Sub\r\n",
)

_needs_lo = pytest.mark.skipif(not _lo.available(), reason="LibreOffice headless not usable here")


def lo_test(fn):
    return pytest.mark.engine(_needs_lo(fn))


# ------------------------------------------------------------------------ helpers


def make_form(
    path: Path,
    template: str = TEMPLATE,
    *,
    password: str | None = None,
    stub: bool = False,
    employee_id: str = "E001",
    name: str = "张三",
    department: str = "客服部",
) -> tuple[Path, FormGenerator]:
    gen = FormGenerator.from_ref(template, PERIODS[_kind(template)], password=password)
    emp = example_employee(gen.form, employee_id=employee_id, name=name, department=department)
    plan, meta = gen.plan(emp)
    deco = vba.form_decorator(password)

    def decorate(wb, ws, plan):
        deco(wb, ws, plan)
        if stub:
            vba.add_vba_modules(wb, [STUB])

    render(plan, meta, path, password=password, decorate=decorate)
    return path, gen


def fill(book: FakeBook, gen: FormGenerator, values: dict) -> None:
    """Type values into the form's input cells as a person would (roster cells skipped)."""
    names = [i.name for i in gen.cf.inputs if i.spec.source != "roster"]
    names += [n for n in values if n.startswith("sig_")]  # the signature block
    for name in names:
        if name not in values:
            continue
        v = values[name]
        if isinstance(v, Decimal):
            v = float(v)
        book.names[name].refers_to_range.value = v


def status_lines(book: FakeBook) -> list[str]:
    return [s for s in book.names[vba.STATUS_NAME].refers_to_range.value if s]


def modules_of(path: Path) -> dict[str, str]:
    parser = VBA_Parser(str(path))
    try:
        return {
            Path(vba_filename).stem: code.replace("\r\n", "\n")
            for _f, _s, vba_filename, code in parser.extract_macros()
        }
    finally:
        parser.close()


def _body(text: str) -> str:
    """A module's code without its Attribute lines, LF line ends."""
    lines = text.replace("\r\n", "\n").split("\n")
    return "\n".join(x for x in lines if not x.startswith("Attribute VB_")).strip()


def summary_xlsm(path: Path, settings: SummarySettings, stub: bool = False) -> Path:
    """A macro-enabled summary as ``collect --xlsm`` makes it: a 汇总 sheet with a button,
    and the 设置 sheet."""
    wb = xlsxwriter.Workbook(str(path))
    ws = wb.add_worksheet("汇总")
    ws.write_string(0, 0, "工号")
    vba.attach_summary_button(wb, settings, worksheet=ws, cell="B1")
    if stub:
        vba.add_vba_modules(wb, [STUB])
    wb.close()
    return path


# ------------------------------------------------------------------ 1. the built file


def test_macros_folder_is_exactly_the_modules():
    files = sorted(p.name for p in vba.macros_dir().iterdir() if not p.name.startswith("."))
    declared = sorted(
        f"{name}.bas.j2" if (vba.macros_dir() / f"{name}.bas.j2").exists() else f"{name}.bas"
        for names in vba.MODULES.values()
        for name in names
    )
    assert files == declared


@pytest.mark.parametrize("kind", sorted(vba.MODULES))
def test_module_text_is_ascii_crlf_and_names_its_macro(kind):
    (mod,) = vba.module_sources(kind, password=None)
    assert mod.source.isascii()
    assert "\n" not in mod.source.replace("\r\n", "")
    macro = {"form": vba.FORM_MACRO, "summary": vba.SUMMARY_MACRO}[kind]
    assert f"Public Sub {macro}()" in mod.source
    call = {"form": FORM_CALL, "summary": SUMMARY_CALL}[kind]
    assert f'RunPython "{call}"' in mod.source


@pytest.mark.parametrize("password", ["secret", "密\"码'1", "a\\b"])
def test_password_is_passed_as_an_ascii_python_literal(password):
    (mod,) = vba.module_sources("form", password=password)
    line = next(x for x in mod.source.split("\r\n") if x.strip().startswith("RunPython "))
    vba_literal = line.split("RunPython ", 1)[1]
    assert vba_literal.startswith('"') and vba_literal.endswith('"')
    call = vba_literal[1:-1].replace('""', '"')  # what VBA passes to RunPython
    arg = call.split("b.recalc_form(password=", 1)[1][:-1]
    assert ast.literal_eval(arg) == password
    assert mod.source.isascii()


def test_built_form_carries_exactly_the_macros_modules(tmp_path):
    path, _gen = make_form(tmp_path / "form.xlsm")
    mods = modules_of(path)
    with zipfile.ZipFile(path) as z:
        workbook_xml = z.read("xl/workbook.xml").decode()
        types = z.read("[Content_Types].xml").decode()
        sheets = [
            z.read(n).decode() for n in sorted(z.namelist()) if n.startswith("xl/worksheets/sheet")
        ]
    # the code names in the workbook and the document modules in the project match
    assert 'workbookPr codeName="ThisWorkbook"' in workbook_xml
    codes = [s.split('codeName="', 1)[1].split('"', 1)[0] for s in sheets]
    assert codes == ["Sheet1", "Sheet2"]
    assert sorted(mods) == sorted(["ThisWorkbook", *codes, *vba.MODULES["form"]])
    for doc in ["ThisWorkbook", *codes]:
        assert _body(mods[doc]) == ""
    (expected,) = vba.module_sources("form", password=None)
    assert _body(mods["KpiForm"]) == _body(expected.source)
    assert "application/vnd.ms-excel.sheet.macroEnabled.main+xml" in types
    assert "application/vnd.ms-office.vbaProject" in types


def test_built_summary_carries_exactly_the_macros_modules(tmp_path):
    path = summary_xlsm(tmp_path / "汇总.xlsm", SummarySettings(inputs=["returned"]))
    mods = modules_of(path)
    assert sorted(mods) == sorted(["ThisWorkbook", "Sheet1", "Sheet2", *vba.MODULES["summary"]])
    (expected,) = vba.module_sources("summary")
    assert _body(mods["KpiSummary"]) == _body(expected.source)


def test_project_references_the_xlwings_addin_like_quickstart(tmp_path):
    from pyopenvba import ExcelFile

    path = tmp_path / "ref.xlsm"
    wb = xlsxwriter.Workbook(str(path))
    wb.add_worksheet()
    bin_ = vba.build_vba_project(vba.module_sources("summary"), ["Sheet1"])
    wb.add_vba_project(io.BytesIO(bin_), is_stream=True)
    wb.close()
    with ExcelFile(path) as book:
        refs = {r.name: r for r in book.references()}
    assert refs["xlwings"].kind == "project"
    assert refs["xlwings"].libid.endswith("xlwings.xlam")
    path2 = tmp_path / "noref.xlsm"
    wb = xlsxwriter.Workbook(str(path2))
    wb.add_worksheet()
    none = vba.build_vba_project(vba.module_sources("summary"), ["Sheet1"], xlwings_reference=False)
    wb.add_vba_project(io.BytesIO(none), is_stream=True)
    wb.close()
    with ExcelFile(path2) as book:
        assert "xlwings" not in {r.name for r in book.references()}


def test_xlwings_reference_record_is_the_one_quickstart_carries(monkeypatch):
    import xlwings
    from pyopenvba import ExcelFile
    from pyopenvba._references import reference_spans

    quickstart = Path(xlwings.__file__).parent / "quickstart.xlsm"
    with ExcelFile(quickstart) as book:
        raw, _code_page = book._reference_data()
    (span,) = [s for s in reference_spans(raw) if s.reference.name == "xlwings"]
    theirs = span.reference.libid  # their author's own path; ours names no one's
    monkeypatch.setattr(vba, "_XLWINGS_LIBID_ABSOLUTE", theirs)
    assert vba._xlwings_reference_block() == raw[span.start : span.end]


def test_entry_points_and_writers_agree_on_the_status_block():
    assert (buttons._STATUS_NAME, buttons._STATUS_LINES) == (vba.STATUS_NAME, vba.STATUS_LINES)


def test_project_is_deterministic_and_built_once():
    mods = vba.module_sources("form", password=None)
    a = vba.build_vba_project(mods, ["Sheet1", "Sheet2"])
    b = vba.build_vba_project(list(mods), ("Sheet1", "Sheet2"))
    assert a == b


def test_sheets_added_after_the_button_get_their_document_module(tmp_path):
    path = tmp_path / "late.xlsm"
    wb = xlsxwriter.Workbook(str(path))
    ws = wb.add_worksheet("表")
    vba.attach_form_button(wb, ws, "D1")
    extra = wb.add_worksheet("later")
    extra.set_vba_name("LaterSheet")
    wb.close()
    assert sorted(modules_of(path)) == sorted(["ThisWorkbook", "Sheet1", "LaterSheet", "KpiForm"])


def test_cli_generate_xlsm_forms_carry_the_button(tmp_path):
    from kpi_excel.cli import main

    roster = tmp_path / "roster.csv"
    roster.write_text(
        "工号,姓名,部门,岗位,考核人\nE001,张三,客服部,客服经理,王总\n", encoding="utf-8"
    )
    args = ["generate", TEMPLATE, "--roster", str(roster), "--period", "2026-11"]
    assert main([*args, "--out", str(tmp_path / "forms"), "--xlsm", "--password", 'p"w']) == 0
    (path,) = (tmp_path / "forms").iterdir()
    assert path.suffix == ".xlsm"
    mods = modules_of(path)
    assert sorted(m for m in mods if _body(mods[m])) == ["KpiForm"]
    assert "b.recalc_form(password='p\"\"w')" in mods["KpiForm"]  # VBA doubles the quote
    book = FakeBook(path)
    assert (
        recalc_form(book, password='p"w').status[0].split(" ", 2)[2].startswith("已用 Python 重算")
    )


def test_xlsx_name_is_refused(tmp_path):
    wb = xlsxwriter.Workbook(str(tmp_path / "form.xlsx"))
    ws = wb.add_worksheet()
    with pytest.raises(ValueError, match=r"\.xlsm"):
        vba.attach_form_button(wb, ws, "A1")
    wb.close()


def test_form_button_sits_outside_the_print_area_with_unlocked_status_lines(tmp_path):
    path, gen = make_form(tmp_path / "form.xlsm")
    wb = openpyxl.load_workbook(path)
    ((title, ref),) = wb.defined_names[vba.STATUS_NAME].destinations
    ws = wb[title]
    assert title == wb.worksheets[0].title  # beside the form, on the form sheet
    cells = [c for row in ws[ref.replace("$", "")] for c in row]
    assert len(cells) == vba.STATUS_LINES
    assert all(c.protection.locked is False for c in cells)
    area_last_col = re.search(r"\$([A-Z]+)\$\d+$", str(ws.print_area)).group(1)
    col = openpyxl.utils.column_index_from_string
    assert col(cells[0].column_letter) > col(area_last_col)
    assert not ws.column_dimensions[cells[0].column_letter].hidden
    with zipfile.ZipFile(path) as z:
        vml = z.read("xl/drawings/vmlDrawing1.vml").decode()
    assert "[0]!KpiRecalc" in vml and "一键重算" in vml


# ------------------------------------------------------- 2. the wiring, in LibreOffice


@lo_test
def test_form_button_runs_the_exact_python_call_in_libreoffice(tmp_path):
    path, _gen = make_form(tmp_path / "form.xlsm", stub=True)
    path2, _ = make_form(tmp_path / "pw.xlsm", stub=True, password='密"码')
    for src, call in (
        (path, FORM_CALL),
        (path2, "import kpi_excel.buttons as b; b.recalc_form(password=" + ascii('密"码') + ")"),
    ):
        (button,) = _lo.button_macros(src)
        assert button["is_button"] and button["label"] == vba.FORM_CAPTION
        assert button["macro"] == (
            "vnd.sun.star.script:VBAProject.KpiForm.KpiRecalc?language=Basic&location=document"
        )
        res = _lo.run_macro(src, button["macro"], tmp_path / "out", recalc_after=False)
        assert res["ok"] and res["checked"], res
        wb = openpyxl.load_workbook(res["out"])
        ((title, ref),) = wb.defined_names[vba.STATUS_NAME].destinations
        first = ref.replace("$", "").split(":")[0]
        assert wb[title][first].value == call


@lo_test
def test_summary_buttons_run_the_exact_python_call_in_libreoffice(tmp_path):
    path = summary_xlsm(tmp_path / "汇总.xlsm", SummarySettings(inputs=["returned"]), stub=True)
    found = _lo.button_macros(path)
    assert sorted(b["sheet"] for b in found) == ["汇总", "设置"]
    url = "vnd.sun.star.script:VBAProject.KpiSummary.KpiCollect?language=Basic&location=document"
    assert {b["macro"] for b in found} == {url}
    assert {b["label"] for b in found} == {vba.SUMMARY_CAPTION}
    res = _lo.run_macro(path, url, tmp_path / "out", recalc_after=False)
    assert res["ok"] and res["checked"], res
    wb = openpyxl.load_workbook(res["out"])
    assert wb["设置"]["E3"].value == SUMMARY_CALL


# ------------------------------------------------------- 3. the entry points, fake book


def test_fake_book_refuses_locked_cells_like_excel(tmp_path):
    path, _gen = make_form(tmp_path / "form.xlsm")
    book = FakeBook(path)
    total = book.names["total"].refers_to_range
    with pytest.raises(ProtectedCellError):
        total.formula = "=1"
    with pytest.raises(WrongPasswordError):
        total.sheet.api.Unprotect("wrong")
    total.sheet.api.Unprotect("kpi")
    total.formula = "=1"


@pytest.mark.parametrize("template", TEMPLATES)
def test_recalc_form_gives_the_recalc_commands_scores(template, tmp_path):
    from kpi_excel.recalc import recalc_file

    path, gen = make_form(tmp_path / "form.xlsm", template)
    emp = example_employee(gen.form, employee_id="E001", name="张三", department="客服部")
    for seed in range(3):
        book = FakeBook(path)
        values = random_values(gen.cf, random.Random(seed), dirty=seed == 2)
        fill(book, gen, values)
        before = recalc_file(book.save(tmp_path / f"typed{seed}.xlsx"))  # the CLI, same file
        res = recalc_form(book)
        after = recalc_file(book.save(tmp_path / f"clicked{seed}.xlsx"))  # what was written back
        for file_res in (before, after):
            by_file = {row.cell: row.value for row in file_res.scores}
            assert by_file, file_res.reason
            for cell in gen.cf.cells:
                assert res.values[cell.name] == by_file[cell.name], (seed, cell.name)
        if seed < 2:  # clean inputs: exactly the Python engine on what was typed
            typed = {**values, **initial_values(gen.cf.inputs, emp)}
            want = evaluate(gen.cf, typed)
            assert res.scores == {k: want[k] for k in res.scores}
            assert res.scores and not res.normalised
        assert status_lines(book) == res.status[: vba.STATUS_LINES]


def test_recalc_form_restores_an_overwritten_formula_and_protects_again(tmp_path):
    path, gen = make_form(tmp_path / "form.xlsm")
    book = FakeBook(path)
    sheet = book.names["total"].refers_to_range.sheet
    want = book.names["total"].refers_to_range.formula
    sheet.api.Unprotect("kpi")  # a person removed the protection and typed over a formula
    book.names["total"].refers_to_range.value = 100
    book.names["score_sales_rate"].refers_to_range.value = "'满分"
    sheet.api.Protect(Password="kpi")
    sheet.api.calls.clear()

    res = recalc_form(book)
    assert sorted(res.restored) == ["score_sales_rate", "total"]
    assert canonical(book.names["total"].refers_to_range.formula) == canonical(want)
    assert sheet.protected
    assert [c[0] for c in sheet.api.calls] == ["Unprotect", "Protect"]
    assert sheet.api.calls[0][1] == ("kpi",)
    assert sheet.api.calls[1][2]["AllowFormattingRows"] is True
    assert any(line.startswith("已恢复被覆盖的公式") for line in status_lines(book))


def test_recalc_form_uses_the_forms_own_password(tmp_path, monkeypatch):
    path, gen = make_form(tmp_path / "form.xlsm", password="s3cret")
    book = FakeBook(path)
    sheet = book.names["total"].refers_to_range.sheet
    sheet.api.Unprotect("s3cret")
    book.names["total"].refers_to_range.value = 1
    sheet.api.Protect(Password="s3cret")
    with pytest.raises(FormError, match="密码"):
        recalc_form(book)  # the default password does not open this sheet
    assert status_lines(book)[0].split(" ", 2)[2].startswith("无法重算")
    assert sheet.protected
    monkeypatch.setattr(buttons.sys, "platform", "darwin")  # macOS: AppleScript spelling
    sheet.api.calls.clear()
    res = recalc_form(book, password="s3cret")
    assert res.restored == ["total"]
    assert [c[0] for c in sheet.api.calls] == ["unprotect", "protect_worksheet"]
    assert sheet.protected


def test_recalc_form_normalises_what_collect_would_accept(tmp_path):
    path, gen = make_form(tmp_path / "form.xlsm")
    book = FakeBook(path)
    values = random_values(gen.cf, random.Random(1), dirty=False)
    fill(book, gen, values)
    typed = "in_sales_rate_actual"
    book.names[typed].refers_to_range.value = "'９０万元"
    book.names["in_satisfaction_actual"].refers_to_range.value = "'优秀"
    res = recalc_form(book)
    assert res.normalised[typed] == ("９０万元", Decimal(90))
    assert book.names[typed].refers_to_range.value == 90.0
    # an error: left as typed
    assert book.names["in_satisfaction_actual"].refers_to_range.value == "优秀"
    lines = status_lines(book)
    assert any("已改为规范写法" in x and "９０万元 → 90" in x for x in lines)
    assert any(x.startswith("错误：") and "优秀" in x for x in lines)
    assert not res.restored and book.names["total"].refers_to_range.sheet.api.calls == []


def test_recalc_form_on_a_workbook_that_is_not_a_form(tmp_path):
    path = summary_xlsm(tmp_path / "s.xlsm", SummarySettings(inputs=["x"]))
    with pytest.raises(FormError, match="_meta"):
        recalc_form(FakeBook(path))


def test_settings_round_trip(tmp_path):
    s = SummarySettings(
        inputs=["a", "/abs/b.zip"],
        roster="花名册.xlsx",
        ledger=None,
        quota="A=20%",
        period="2026-11",
    )
    rows = [("项目", "值", "说明"), *buttons.settings_rows(s)]
    got = buttons.read_settings(rows, tmp_path)
    assert got == SummarySettings(
        inputs=[str(tmp_path / "a"), "/abs/b.zip"],
        roster=str(tmp_path / "花名册.xlsx"),
        ledger=None,
        quota="A=20%",
        period="2026-11",
    )
    with pytest.raises(KpiExcelError, match="来源"):
        buttons.read_settings([("项目", "值", "说明"), ("来源", None, "")])


def _returned_forms(folder: Path, tmp: Path) -> None:
    """Three filled forms of two templates, one with a problem, as returned files."""
    folder.mkdir()
    people = [
        ("E001", "张三", "客服部", TEMPLATE, 0),
        ("E002", "李四", "客服部", TEMPLATE, 1),
        ("E003", "王五", "销售部", "customer_manager_kpi_scale", 2),
    ]
    for eid, name, dept, template, seed in people:
        path, gen = make_form(
            tmp / f"{eid}.xlsm", template, employee_id=eid, name=name, department=dept
        )
        book = FakeBook(path)
        values = random_values(gen.cf, random.Random(seed), dirty=False)
        for n, who in enumerate(gen.form.signatures, start=1):  # signed and dated
            values[f"sig_{n}"] = name if who.startswith("被考核") else "审核人"
            values[f"sig_{n}_date"] = Decimal(46347)  # 2026-11-21
        fill(book, gen, values)
        if seed == 1:  # a manager pressed 一键重算 after an accident with a formula
            sheet = book.names["total"].refers_to_range.sheet
            sheet.api.Unprotect("kpi")
            book.names["total"].refers_to_range.value = 99
            sheet.api.Protect(Password="kpi")
            assert recalc_form(book).restored == ["total"]
        book.save(folder / f"2026-11_{dept}_{name}_{eid}.xlsx")


def test_collect_summary_writes_what_collect_writes(tmp_path):
    from kpi_excel.collect import collect

    returned = tmp_path / "returned"
    _returned_forms(returned, tmp_path)
    cli_out = tmp_path / "cli" / "汇总.xlsx"
    collect([returned], out=cli_out, db=tmp_path / "cli" / "ledger.sqlite", quota="A=30%")

    settings = SummarySettings(inputs=["returned"], ledger="button/ledger.sqlite", quota="A=30%")
    (tmp_path / "button").mkdir()
    book = FakeBook(summary_xlsm(tmp_path / "汇总.xlsm", settings))
    coll = collect_summary(book)
    assert coll.counts()["files"] == 3
    # the button's status lines and restored formula keep the fingerprint intact: the
    # file where it was pressed is only "not recalculated" (openpyxl saved it)
    pressed = next(f for f in coll.files if f.employee_id == "E002")
    assert {i.kind for i in pressed.issues} == {"stale_value"}, pressed.reason

    want = openpyxl.load_workbook(cli_out)
    assert [s.name for s in book.sheets] == [*want.sheetnames, "设置"]
    for ws in want.worksheets:
        rows = [[c.value for c in row] for row in ws.iter_rows()]
        got = book.sheets[ws.title].values()
        width = max([len(r) for r in rows] + [0])
        norm = [
            [(float(v) if isinstance(v, int | float) and not isinstance(v, bool) else v) for v in r]
            + [None] * (width - len(r))
            for r in rows
        ]
        got = [r + [None] * (width - len(r)) for r in got]
        while norm and all(v is None for v in norm[-1]):
            norm.pop()
        assert got == norm, ws.title
    lines = status_lines(book)
    assert lines[0].split(" ", 2)[2].startswith("已重新回收：3 份文件")
    assert (tmp_path / "button" / "ledger.sqlite").is_file()


def test_cli_summary_xlsm_and_its_button_rewrite_the_same_rows(tmp_path):
    from kpi_excel.cli import main

    returned = tmp_path / "returned"
    _returned_forms(returned, tmp_path)
    out = returned / "汇总.xlsm"  # kept among the returns: never collected itself
    assert main(["collect", str(returned), "--out", str(out), "--xlsm", "--quota", "A=30%"]) == 0
    mods = modules_of(out)
    assert sorted(m for m in mods if _body(mods[m])) == list(vba.MODULES["summary"])
    with zipfile.ZipFile(out) as z:
        vml = [z.read(n).decode() for n in z.namelist() if n.endswith(".vml")]
    assert sum(v.count("[0]!KpiCollect") for v in vml) == 2  # on 汇总 and on 设置
    written = openpyxl.load_workbook(out)
    settings = buttons.read_settings(written["设置"].iter_rows(values_only=True))
    assert settings.inputs == [str(returned.resolve())] and settings.quota == "A=30%"
    assert settings.ledger == str(out.with_suffix(".sqlite").resolve())

    book = FakeBook(out)
    before = {s.name: s.values() for s in book.sheets}
    coll = collect_summary(book)
    assert coll.counts()["files"] == 3  # the summary itself is not collected
    # the summary and its ledger, which exist now, are skipped as this collection's outputs
    skipped = {Path(p).name for p, _why in coll.skipped}
    assert {"汇总.xlsm", "汇总.sqlite"} <= skipped
    for sheet in book.sheets:
        if sheet.name == "设置":
            continue
        rows = sheet.values()
        if sheet.name == "文件":
            rows = [r for r in rows if r[1] != "跳过"]
        assert rows == before[sheet.name], sheet.name


def test_collect_summary_without_sources(tmp_path):
    book = FakeBook(summary_xlsm(tmp_path / "s.xlsm", SummarySettings(inputs=[])))
    with pytest.raises(KpiExcelError, match="来源"):
        collect_summary(book)
    assert "无法汇总" in status_lines(book)[0]


def test_entry_points_default_to_the_calling_book(monkeypatch, tmp_path):
    import xlwings as xw

    path, _gen = make_form(tmp_path / "form.xlsm")
    book = FakeBook(path)
    monkeypatch.setattr(xw.Book, "caller", staticmethod(lambda: book))
    res = recalc_form()
    assert status_lines(book) == res.status
