"""The LibreOffice harness (kpi_excel._lo) against a real headless LibreOffice.

One soffice start per use: the recalc cases share a single batch (module fixture).
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import openpyxl
import pytest
from openpyxl.styles import Protection
from openpyxl.workbook.defined_name import DefinedName

from kpi_excel import _lo

_needs_lo = pytest.mark.skipif(
    not _lo.available(),
    reason="LibreOffice headless not usable here: need `soffice` on PATH and a Python "
    "that can `import uno` (Debian: apt-get install libreoffice-calc-nogui python3-uno)",
)


def lo_test(fn):
    """A test that drives the real LibreOffice (marked `engine`)."""
    return pytest.mark.engine(_needs_lo(fn))


SHEET = "考核 表"

NAMES = {
    "in_score": f"'{SHEET}'!$B$1",
    "in_weight": f"'{SHEET}'!$B$2",
    "in_comment": f"'{SHEET}'!$B$3",
    "in_locked": f"'{SHEET}'!$D$1",
    "out_ratio": f"'{SHEET}'!$C$1",
    "out_istext": f"'{SHEET}'!$C$2",
    "out_div": f"'{SHEET}'!$C$3",
    "out_comment": f"'{SHEET}'!$C$4",
    "out_blank": f"'{SHEET}'!$E$9",
    "total": "Summary!$B$1",
}
READ = [
    "in_score",
    "in_comment",
    "in_locked",
    "out_ratio",
    "out_istext",
    "out_div",
    "out_comment",
    "out_blank",
    "total",
]


def make_form(path: Path) -> Path:
    """A small protected form: inputs B1:B3 unlocked, formulas in C, a summary sheet."""
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = SHEET
    ws["A1"], ws["A2"], ws["A3"] = "得分", "权重", "评语"
    ws["B1"], ws["B2"], ws["B3"] = 90, 4, "待填"
    for ref in ("B1", "B2", "B3"):
        ws[ref].protection = Protection(locked=False)
    ws["C1"] = '=IF(ISNUMBER(B1),ROUND(B1/B2,6),"")'
    ws["C2"] = "=ISTEXT(B1)"
    ws["C3"] = "=B1/B2"
    ws["C4"] = '=IF(B3="","(空)",B3)'
    ws["D1"] = 5  # locked
    ws.protection.sheet = True
    summary = wb.create_sheet("Summary")
    summary["B1"] = f"=IF(ISNUMBER('{SHEET}'!C1),'{SHEET}'!C1*100,0)"
    for name, ref in NAMES.items():
        wb.defined_names[name] = DefinedName(name, attr_text=ref)
    wb.save(path)
    return path


def patch_cached_value(src: Path, dst: Path, cell: str, cached: str) -> Path:
    """Copy src to dst giving formula cell ``cell`` of sheet1 a stale cached ``<v>``."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename == "xl/worksheets/sheet1.xml":
                xml = data.decode("utf-8")
                pattern = rf'(<c r="{cell}"[^>]*>\s*<f>[^<]*</f>\s*)(<v\s*/>|<v>[^<]*</v>)?'
                xml, n = re.subn(pattern, rf"\g<1><v>{cached}</v>", xml, count=1)
                assert n == 1, "formula cell not found in sheet XML"
                data = xml.encode("utf-8")
            zout.writestr(info, data)
    return dst


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """One recalc batch (one soffice process) covering all the recalc cases."""
    src_dir = tmp_path_factory.mktemp("src")
    out_dir = tmp_path_factory.mktemp("out")
    form = make_form(src_dir / "form.xlsx")
    stale = patch_cached_value(form, src_dir / "stale.xlsx", "C1", "999")
    broken = src_dir / "broken.xlsx"
    broken.write_bytes(b"this is not a spreadsheet")
    jobs = [
        _lo.Job(form, {"in_score": 90, "in_weight": 4, "in_comment": "优秀", "in_locked": 7}, READ),
        _lo.Job(
            form,
            {"in_score": "八十", "in_weight": 4, "in_comment": None},
            READ,
            out_name="form_text.xlsx",
        ),
        _lo.Job(form, {"in_score": 90, "in_weight": 0}, READ, out_name="form_div0.xlsx"),
        _lo.Job(stale, {}, READ),
        _lo.Job(broken, {"in_score": 1}, ["out_ratio"]),
        _lo.Job(form, {"no_such_name": 1}, ["out_ratio", "no_such_name"], out_name="form_bad.xlsx"),
    ]
    starts = []
    real_enter = _lo._Office.__enter__

    def counting_enter(self):
        starts.append(self.pipe)
        return real_enter(self)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_lo._Office, "__enter__", counting_enter)
        results = _lo.recalc(jobs, out_dir)
    return {
        "jobs": jobs,
        "results": results,
        "starts": starts,
        "src_dir": src_dir,
        "out_dir": out_dir,
        "stale": stale,
    }


@lo_test
def test_available():
    assert _lo.available()
    assert _lo.find_uno_python()


@lo_test
def test_all_files_come_back_from_one_soffice(batch):
    jobs, results = batch["jobs"], batch["results"]
    assert len(results) == len(jobs)
    assert len(batch["starts"]) == 1
    assert [r.src for r in results] == [j.src for j in jobs]
    good = [r for r in results if r.error is None]
    assert len(good) == 5
    assert {r.out.name for r in good} == {
        "form.xlsx",
        "form_text.xlsx",
        "form_div0.xlsx",
        "stale.xlsx",
        "form_bad.xlsx",
    }
    for r in good:
        assert r.out.parent == batch["out_dir"].resolve()
        assert r.out.is_file()
    # no LibreOffice lock files left next to the sources
    assert not [p.name for p in batch["src_dir"].iterdir() if p.name.startswith(".~lock")]


@lo_test
def test_numbers_recalculate(batch):
    r = batch["results"][0]
    assert r.errors == {}
    assert r.values["out_ratio"] == 22.5
    assert r.values["total"] == 2250.0
    assert r.values["out_istext"] == 0.0  # booleans come back as 1.0 / 0.0
    assert r.values["out_div"] == 22.5
    assert r.values["out_comment"] == "优秀"
    assert r.values["in_comment"] == "优秀"
    assert r.values["out_blank"] is None
    # a locked cell on a protected sheet is still set through the API
    assert r.values["in_locked"] == 7.0


@lo_test
def test_text_stays_text_and_none_clears(batch):
    r = batch["results"][1]
    assert r.values["in_score"] == "八十"
    assert r.values["out_istext"] == 1.0
    assert r.values["out_ratio"] == ""  # a formula's "" reads as "", not None
    assert r.values["total"] == 0.0
    assert r.values["in_comment"] is None  # was "待填" in the template
    assert r.values["out_comment"] == "(空)"
    assert r.values["out_div"] == "#VALUE!"
    assert r.errors == {"out_div": "#VALUE!"}

    # the saved workbook keeps the text as text and the cached results
    wb = openpyxl.load_workbook(r.out, data_only=True)
    ws = wb[SHEET]
    assert ws["B1"].value == "八十" and ws["B1"].data_type == "s"
    assert ws["B3"].value is None
    assert ws["C4"].value == "(空)"
    assert ws.protection.sheet
    assert ws["B1"].protection.locked is False
    assert wb.defined_names["in_score"].attr_text == f"'{SHEET}'!$B$1"


@lo_test
def test_errors_are_marked(batch):
    r = batch["results"][2]
    assert r.values["out_div"] == "#DIV/0!"
    assert r.values["out_ratio"] == "#DIV/0!"
    assert r.errors["out_div"] == "#DIV/0!"
    assert r.errors["out_ratio"] == "#DIV/0!"
    assert r.values["total"] == 0.0


@lo_test
def test_stale_cached_value_is_replaced(batch):
    # premise: the source really carries a wrong cached value
    src = openpyxl.load_workbook(batch["stale"], data_only=True)
    assert src[SHEET]["C1"].value == 999
    r = batch["results"][3]
    assert r.error is None and r.errors == {}
    assert r.values["out_ratio"] == 22.5
    assert r.values["total"] == 2250.0
    out = openpyxl.load_workbook(r.out, data_only=True)
    assert out[SHEET]["C1"].value == 22.5
    assert out["Summary"]["B1"].value == 2250


@lo_test
def test_unloadable_file_is_reported_and_batch_goes_on(batch):
    r = batch["results"][4]
    assert r.out is None
    assert r.error
    assert not r.ok
    assert batch["results"][5].values["out_ratio"] == 22.5  # the job after it ran


@lo_test
def test_unknown_names_are_errors(batch):
    r = batch["results"][5]
    assert "no_such_name" in r.errors["no_such_name"]
    assert r.values["no_such_name"] is None
    assert "fill failed" in r.errors["no_such_name"]


@lo_test
def test_convert_pdf(batch, tmp_path):
    recalculated = batch["results"][0].out
    pdfs = _lo.convert_pdf([recalculated], tmp_path / "pdf")
    assert pdfs == [(tmp_path / "pdf" / "form.pdf").resolve()]
    assert pdfs[0].read_bytes()[:5] == b"%PDF-"
    if shutil.which("pdftotext"):
        text = subprocess.run(
            ["pdftotext", "-layout", str(pdfs[0]), "-"], capture_output=True, check=True
        ).stdout.decode("utf-8", "replace")
        assert "22.5" in text
        assert "优秀" in text


@lo_test
def test_convert_pdf_reports_missing(batch, tmp_path):
    good = batch["results"][0].out
    missing = tmp_path / "does_not_exist.xlsx"
    with pytest.raises(_lo.LibreOfficeError, match="does_not_exist"):
        _lo.convert_pdf([good, missing], tmp_path / "pdf")
    assert (tmp_path / "pdf" / "form.pdf").is_file()


# ---------------------------------------------------------------- macros

_MODULE = """Sub Main
    Dim sheet As Object
    sheet = ThisComponent.Sheets.getByIndex(0)
    sheet.getCellByPosition(0, 0).setValue(21)
End Sub

Sub Boom
    Dim x As Double
    x = 0
    x = 1 / x
End Sub
"""


def make_ods_with_basic(path: Path, module_code: str) -> Path:
    """A minimal .ods whose Standard.Module1 holds ``module_code``; B1 = A1*2."""
    from xml.sax.saxutils import escape

    content = """<?xml version="1.0" encoding="UTF-8"?>
<office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0"
 xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0"
 xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"
 xmlns:of="urn:oasis:names:tc:opendocument:xmlns:of:1.2" office:version="1.2">
<office:body><office:spreadsheet>
<table:table table:name="Sheet1"><table:table-row>
<table:table-cell office:value-type="float" office:value="1"/>
<table:table-cell table:formula="of:=[.A1]*2" office:value-type="float" office:value="2"/>
</table:table-row></table:table>
</office:spreadsheet></office:body></office:document-content>
"""
    module = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<!DOCTYPE script:module PUBLIC "-//OpenOffice.org//DTD OfficeDocument 1.0//EN" "module.dtd">\n'
        '<script:module xmlns:script="http://openoffice.org/2000/script" script:name="Module1" '
        f'script:language="StarBasic">{escape(module_code)}</script:module>\n'
    )
    lib = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE library:library PUBLIC "-//OpenOffice.org//DTD OfficeDocument 1.0//EN" "library.dtd">
<library:library xmlns:library="http://openoffice.org/2000/library" library:name="Standard" library:readonly="false" library:passwordprotected="false">
 <library:element library:name="Module1"/>
</library:library>
"""
    libs = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE library:libraries PUBLIC "-//OpenOffice.org//DTD OfficeDocument 1.0//EN" "libraries.dtd">
<library:libraries xmlns:library="http://openoffice.org/2000/library" xmlns:xlink="http://www.w3.org/1999/xlink">
 <library:library library:name="Standard" library:link="false"/>
</library:libraries>
"""
    manifest = """<?xml version="1.0" encoding="UTF-8"?>
<manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.2">
 <manifest:file-entry manifest:full-path="/" manifest:media-type="application/vnd.oasis.opendocument.spreadsheet"/>
 <manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/>
 <manifest:file-entry manifest:full-path="Basic/script-lc.xml" manifest:media-type="text/xml"/>
 <manifest:file-entry manifest:full-path="Basic/Standard/script-lb.xml" manifest:media-type="text/xml"/>
 <manifest:file-entry manifest:full-path="Basic/Standard/Module1.xml" manifest:media-type="text/xml"/>
</manifest:manifest>
"""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("mimetype", "application/vnd.oasis.opendocument.spreadsheet")
        z.writestr("content.xml", content, zipfile.ZIP_DEFLATED)
        z.writestr("Basic/script-lc.xml", libs, zipfile.ZIP_DEFLATED)
        z.writestr("Basic/Standard/script-lb.xml", lib, zipfile.ZIP_DEFLATED)
        z.writestr("Basic/Standard/Module1.xml", module, zipfile.ZIP_DEFLATED)
        z.writestr("META-INF/manifest.xml", manifest, zipfile.ZIP_DEFLATED)
    return path


def _ods_values(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as z:
        xml = z.read("content.xml").decode("utf-8")
    return re.findall(r'office:value="([^"]*)"', xml)


def _basic_url(macro: str, library: str = "Standard", module: str = "Module1") -> str:
    return f"vnd.sun.star.script:{library}.{module}.{macro}?language=Basic&location=document"


@lo_test
def test_run_macro_runs_document_basic(tmp_path):
    src = make_ods_with_basic(tmp_path / "macro.ods", _MODULE)
    res = _lo.run_macro(src, _basic_url("Main"), tmp_path / "out")
    assert res == {
        "ok": True,
        "error": None,
        "out": (tmp_path / "out" / "macro.ods").resolve(),
        "checked": True,
    }
    assert _ods_values(res["out"])[:2] == ["21", "42"]  # A1 set by the macro, B1 = A1*2
    # the temporary error-trapping wrapper module is not saved
    with zipfile.ZipFile(res["out"]) as z:
        assert not [n for n in z.namelist() if "KpiHarness" in n]


@lo_test
def test_run_macro_reports_basic_errors(tmp_path):
    src = make_ods_with_basic(tmp_path / "macro.ods", _MODULE)
    res = _lo.run_macro(src, _basic_url("Boom"), tmp_path / "out")
    assert res["ok"] is False
    assert res["checked"] is True
    assert "Basic error 11" in res["error"]  # division by zero
    assert res["out"].is_file()


def _xlwings_vba_project(tmp_path: Path) -> Path | None:
    """A real vbaProject.bin (Module1.SampleCall) from xlwings' quickstart, if installed."""
    try:
        import xlwings
    except Exception:  # noqa: BLE001 - optional dependency, may fail to import
        return None
    xlsm = Path(xlwings.__file__).parent / "quickstart.xlsm"
    if not xlsm.is_file():
        return None
    with zipfile.ZipFile(xlsm) as z:
        if "xl/vbaProject.bin" not in z.namelist():
            return None
        out = tmp_path / "vbaProject.bin"
        out.write_bytes(z.read("xl/vbaProject.bin"))
    return out


@lo_test
def test_button_macros_of_xlsxwriter_buttons(tmp_path):
    import xlsxwriter

    vba = _xlwings_vba_project(tmp_path)
    if vba is None:
        pytest.skip(
            "needs a vbaProject.bin; taken from xlwings' quickstart.xlsm (pip install xlwings)"
        )
    path = tmp_path / "buttons.xlsm"
    wb = xlsxwriter.Workbook(path)
    ws = wb.add_worksheet(SHEET)
    ws.write("A1", 1)
    wb.add_vba_project(str(vba))
    ws.insert_button("C3", {"macro": "SampleCall", "caption": "计算 得分", "width": 120})
    wb.close()

    buttons = _lo.button_macros(path)
    assert len(buttons) == 1
    b = buttons[0]
    assert b["sheet"] == SHEET
    assert b["label"] == "计算 得分"
    assert b["is_button"] is True
    assert b["macro"] == _basic_url("SampleCall", library="VBAProject")

    # SampleCall calls xlwings' RunPython, which LibreOffice does not have: the error
    # must come back (headless LibreOffice would otherwise swallow it)
    res = _lo.run_macro(path, b["macro"], tmp_path / "out")
    assert res["ok"] is False and res["checked"] is True
    assert "RunPython" in res["error"]
    with zipfile.ZipFile(res["out"]) as z:
        assert "xl/vbaProject.bin" in z.namelist()  # VBA kept on save


# ---------------------------------------------------------------- no engine needed


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("八十", "八十"),
        ("80", "80"),
        (80, 80.0),
        (True, 1.0),
        (dt.date(2024, 1, 1), 45292.0),
        (dt.datetime(2024, 1, 1, 12), 45292.5),
    ],
)
def test_cell_value_conversion(value, expected):
    assert _lo._cell_value(value) == expected


def test_cell_value_rejects_other_types():
    with pytest.raises(TypeError):
        _lo._cell_value(object())


def test_duplicate_outputs_rejected(tmp_path):
    a = tmp_path / "a" / "x.xlsx"
    b = tmp_path / "b" / "x.xlsx"
    with pytest.raises(ValueError, match="both be written"):
        _lo.recalc([_lo.Job(a), _lo.Job(b)], tmp_path / "out")
