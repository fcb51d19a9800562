"""The fast writer (kpi_excel.fastwrite) against the reference writer (XlsxWriter).

Every template is written both ways for employees that differ in every way the form
can show (names that wrap, empty fields, other targets, text to escape), and the two
workbooks are compared as a reader sees them: values and types, formulas, cached
values, styles, merges, row heights and column widths, defined names, validations,
protection, print setup, the ``_meta`` sheet and its fingerprint; and cell by cell as
python-calamine reads them. Unchanged parts of the zip must be byte-identical.
"""

from __future__ import annotations

import copy
import io
import os
import warnings
import zipfile
from decimal import Decimal
from pathlib import Path
from typing import Any

import openpyxl
import pytest
import python_calamine
from test_collect import G

from kpi_excel import fastwrite
from kpi_excel.fastwrite import CompiledWorkbook, Unsupported, ZipEntry, zip_bytes
from kpi_excel.generate import FormGenerator, generate_command
from kpi_excel.meta import locked_cells_from_openpyxl, read_meta, verify
from kpi_excel.roster import Employee, example_employee
from kpi_excel.spec.load import builtin_forms, load_form

DATA = Path(__file__).parent / "data"
PERIOD = {"monthly": "2026-11", "quarterly": "2026-Q4", "yearly": "2026"}
SECRET = b"fast-secret"
TEMPLATES = [*sorted(builtin_forms()), *(str(p) for p in sorted(DATA.glob("*.yaml")))]


def _gen(ref: str, **kw: Any) -> FormGenerator:
    path = builtin_forms().get(ref, Path(ref))
    form = load_form(path)
    kw.setdefault("company", "示例科技有限公司")
    kw.setdefault("secret", SECRET)
    return FormGenerator.from_ref(ref, PERIOD[form.period], **kw)


def _employees(gen: FormGenerator) -> list[Employee]:
    form = gen.form
    plain = example_employee(form)
    wide = example_employee(
        form,
        q=Decimal("12345.678"),
        name="司马·相如 Xiangru Sima-Longname",
        department="集团华南大区客户服务中心第三运营管理部（筹）",
        position="资深客户服务经理兼质量与流程改进专员",
        reviewer='欧阳 & <王> "老师"',
        employee_id="E9001",
    )
    sparse = example_employee(form, q=None, reviewer="", position="", employee_id="E9002")
    odd = example_employee(form, name=" 前后有空格 ", department="A&B<部>", employee_id="E9003")
    for k, (name, v) in enumerate(sorted(plain.targets.items())):
        wide.targets[name] = v * 2 + 1 if v < 10**6 else v
        sparse.targets[name] = (v / 3).quantize(Decimal("0.01")) if k % 2 else v
        odd.targets[name] = v
    for e in (wide, sparse, odd):
        for name, v in list(e.targets.items()):
            spec = _spec(form, name)
            if spec.kind == "count":
                e.targets[name] = v.to_integral_value()
            if spec.max is not None and e.targets[name] > spec.max:
                e.targets[name] = spec.max
            if spec.min is not None and e.targets[name] < spec.min:
                e.targets[name] = spec.min
    return [plain, wide, sparse, odd]


def _spec(form: Any, name: str) -> Any:
    for _s, ind in form.indicators():
        for key, spec in ind.inputs.items():
            if f"in_{ind.id}_{key}" == name:
                return spec
    raise KeyError(name)


# ------------------------------------------------------------------ what a reader sees


def _style(c: Any) -> tuple:
    return tuple(repr(x) for x in (c.font, c.fill, c.border, c.alignment, c.protection)) + (
        c.number_format,
    )


def digest(data: bytes) -> dict[str, Any]:
    """Everything openpyxl reads from a workbook, for comparing two writers."""
    wb = openpyxl.load_workbook(io.BytesIO(data))
    wbv = openpyxl.load_workbook(io.BytesIO(data), data_only=True)
    out: dict[str, Any] = {
        "sheets": [(ws.title, ws.sheet_state) for ws in wb.worksheets],
        "names": {n: dn.attr_text for n, dn in wb.defined_names.items()},
        "calc": (wb.calculation.calcMode, wb.calculation.fullCalcOnLoad),
    }
    for ws in wb.worksheets:
        wsv = wbv[ws.title]
        cells = {}
        for row in ws.iter_rows():
            for c in row:
                cells[c.coordinate] = (c.value, c.data_type, wsv[c.coordinate].value, _style(c))
        p = ws.protection
        out[ws.title] = {
            "cells": cells,
            "merges": sorted(str(r) for r in ws.merged_cells.ranges),
            "rows": {r: (d.height, d.customHeight, d.hidden) for r, d in ws.row_dimensions.items()},
            "cols": {k: (d.width, d.hidden) for k, d in ws.column_dimensions.items()},
            "validations": sorted(
                (
                    str(dv.sqref),
                    dv.type,
                    dv.operator,
                    dv.formula1,
                    dv.formula2,
                    dv.allow_blank,
                    dv.showErrorMessage,
                    dv.showInputMessage,
                    dv.errorTitle,
                    dv.error,
                    dv.promptTitle,
                    dv.prompt,
                    dv.errorStyle,
                )
                for dv in ws.data_validations.dataValidation
            ),
            "protection": (
                p.sheet,
                p.password,
                p.selectLockedCells,
                p.selectUnlockedCells,
                p.formatRows,
                p.formatCells,
                p.insertRows,
                p.deleteRows,
            ),
            "print": (
                ws.page_setup.paperSize,
                ws.page_setup.orientation,
                ws.page_setup.fitToWidth,
                ws.page_setup.fitToHeight,
                ws.print_options.horizontalCentered,
                repr(ws.page_margins),
                ws.oddHeader.center.text,
                ws.oddFooter.center.text,
                ws.print_title_rows,
                ws.print_area,
            ),
            "view": (
                ws.freeze_panes,
                ws.sheet_view.showGridLines,
                ws.sheet_format.defaultRowHeight,
            ),
        }
    return out


def calamine_values(data: bytes) -> dict[str, list[list[Any]]]:
    wb = python_calamine.CalamineWorkbook.from_filelike(io.BytesIO(data))
    return {n: wb.get_sheet_by_name(n).to_python(skip_empty_area=False) for n in wb.sheet_names}


def assert_same_workbook(fast: bytes, ref: bytes) -> None:
    a, b = digest(fast), digest(ref)
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], dict) and "cells" in a[key]:
            for part in a[key]:
                if part == "cells":
                    diff = {
                        c: (a[key]["cells"].get(c), b[key]["cells"].get(c))
                        for c in set(a[key]["cells"]) | set(b[key]["cells"])
                        if a[key]["cells"].get(c) != b[key]["cells"].get(c)
                    }
                    assert not diff, f"{key}: {sorted(diff.items())[:3]}"
                else:
                    assert a[key][part] == b[key][part], (key, part)
        else:
            assert a[key] == b[key], key
    assert calamine_values(fast) == calamine_values(ref)
    with zipfile.ZipFile(io.BytesIO(fast)) as za, zipfile.ZipFile(io.BytesIO(ref)) as zb:
        assert za.testzip() is None
        assert za.namelist() == zb.namelist()
        for name in za.namelist():
            if name.startswith("xl/worksheets/") or name == "xl/sharedStrings.xml":
                continue
            assert za.read(name) == zb.read(name), name


# ------------------------------------------------------------------ equivalence


@pytest.mark.parametrize("ref", TEMPLATES, ids=lambda r: Path(r).stem)
def test_fast_writer_equals_reference(ref: str) -> None:
    gen = _gen(ref)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a template the fast writer cannot compile fails here
        fast = CompiledWorkbook(gen)
    for emp in _employees(gen):
        got = fast.to_bytes(emp)
        want = gen.reference_to_bytes(emp)
        assert_same_workbook(got, want)
        wb = openpyxl.load_workbook(io.BytesIO(got))
        meta = read_meta(wb)
        assert verify(SECRET, locked_cells_from_openpyxl(wb[meta["sheet"]]), meta)
    assert fast.fallbacks == 0


@pytest.mark.parametrize("ref", TEMPLATES, ids=lambda r: Path(r).stem)
def test_blank_form_path_equals_slot_by_slot(ref: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The blank form's path (frames kept by targets and heights, the fingerprint's
    static runs, the zip records) gives the bytes of the slot-by-slot path, for
    employees sharing targets or fields or not, the same employee again (from the
    caches), and with frames evicted (a cache of two)."""
    monkeypatch.setattr(fastwrite, "_FRAMES", 2)
    gen = _gen(ref)
    fast = CompiledWorkbook(gen)
    emps = _employees(gen)
    plain, wide = emps[0], emps[1]
    # same targets as `wide`, other fields; same fields as `plain`, other targets
    twin = copy.deepcopy(wide)
    twin.fields.update(name="王芳", department="质检部", employee_id="E9101")
    moved = copy.deepcopy(plain)
    for name in moved.targets:
        moved.targets[name] = wide.targets[name]
    long_name = copy.deepcopy(plain)
    long_name.fields.update(name="名" * 40, position="岗" * 50, employee_id="E9102")
    for emp in [*emps, twin, moved, long_name, *emps, plain]:
        assert fast.to_bytes(emp) == fast._general_bytes(emp, None), emp.employee_id
    assert fast.fallbacks == 0


def test_rule_text_naming_a_field(tmp_path: Path) -> None:
    """A rule text that names a roster field: its texts follow the field too, so
    employees with the same targets but other departments get their own texts."""
    src = builtin_forms()["cs_manager_monthly_kpi"].read_text(encoding="utf-8")
    assert src.count("目标{{ target }}分") == 1
    path = tmp_path / "named_field.yaml"
    path.write_text(
        src.replace("目标{{ target }}分", "{{ department }}目标{{ target }}分"), "utf-8"
    )
    gen = _gen(str(path))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fast = CompiledWorkbook(gen)
    a = example_employee(gen.form, department="客服部")
    b = example_employee(gen.form, department="质检部", employee_id="E2")
    for emp in (a, b, a):
        got = fast.to_bytes(emp)
        assert got == fast._general_bytes(emp, None)
        assert_same_workbook(got, gen.reference_to_bytes(emp))


def test_blank_form_path_checks_its_frames(monkeypatch: pytest.MonkeyPatch) -> None:
    """A frame that went wrong is caught: the comparison above can fail."""
    gen = _gen("cs_manager_monthly_kpi")
    fast = CompiledWorkbook(gen)
    emp = example_employee(gen.form, name="王芳")
    real = fastwrite._frame

    def off_by_one(groups: list[Any], fill: Any) -> Any:
        frame = real(groups, fill)
        if isinstance(frame[-1], tuple):  # a CRC over other bytes
            frame[-1] = (frame[-1][0] + b" ", frame[-1][1])
        return frame

    monkeypatch.setattr(fastwrite, "_frame", off_by_one)
    fast._frame_cache.clear()
    assert fast.to_bytes(emp) != fast._general_bytes(emp, None)
    with pytest.raises(Unsupported, match="空白表"):
        CompiledWorkbook(gen)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "张伟",
        "tab\there",
        "line\nbreak",
        "bell\x07",
        "\x00",
        "\x1f end",
        "\x7f",
        "_x0041_",
        "A_x00e9_B",
        "_X0041_",
        "_x004_",
        "_x00G1_",
        "\ufffe",
        "\uffff",
        "\u3000全角空格",
        "\u200b零宽",
        "\ud7ff\ue000",
        "emoji 😀",
        "a\u2028b",
    ],
)
def test_needs_escape_is_what_xlsxwriter_rewrites(text: str) -> None:
    from xlsxwriter.xmlwriter import XMLwriter

    assert fastwrite._needs_escape(text) == (XMLwriter._escape_control_characters(text) != text)


def test_write_file_is_write_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = bytes(range(256)) * 400
    a, b = tmp_path / "a.xlsx", tmp_path / "b.xlsx"
    a.write_bytes(data)
    fastwrite.write_file(str(b), data)
    assert b.read_bytes() == data
    assert b.stat().st_mode == a.stat().st_mode
    fastwrite.write_file(b, b"short")  # an existing file is truncated
    assert b.read_bytes() == b"short"
    real = os.write
    monkeypatch.setattr(os, "write", lambda fd, d: real(fd, bytes(d[:1000])))  # short writes
    fastwrite.write_file(b, data)
    assert b.read_bytes() == data


def test_probe_data_does_not_leak() -> None:
    gen = _gen("cs_manager_monthly_kpi")
    fast = CompiledWorkbook(gen)
    emp = example_employee(
        gen.form, name="王芳", department="质检部", reviewer="赵六", employee_id="E7"
    )
    data = fast.to_bytes(emp)
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        text = "".join(z.read(n).decode("utf-8") for n in z.namelist() if n.endswith(".xml"))
    for probe_value in ("张伟", "客服部", "李娜", "欧阳", "P20002"):
        assert probe_value not in text


def test_heights_follow_the_text() -> None:
    """A long rule text (a large target) and a long name wrap: rows grow as in the reference."""
    gen = _gen("customer_manager_kpi_scale")
    fast = CompiledWorkbook(gen)
    emp = example_employee(gen.form, name="名" * 40, department="部" * 60)
    for name in emp.targets:
        emp.targets[name] = Decimal("123456789.123")
    got, want = digest(fast.to_bytes(emp)), digest(gen.reference_to_bytes(emp))
    sheet = read_meta(openpyxl.load_workbook(io.BytesIO(gen.reference_to_bytes(emp))))["sheet"]
    assert got[sheet]["rows"] == want[sheet]["rows"]
    plain = digest(gen.reference_to_bytes(example_employee(gen.form)))
    assert plain[sheet]["rows"] != want[sheet]["rows"]  # the case does change heights


def test_text_needing_escapes_goes_to_the_reference_writer() -> None:
    gen = _gen("cs_dept")
    fast = CompiledWorkbook(gen)
    emp = example_employee(gen.form, name="A_x0041_\x07B")
    assert_same_workbook(fast.to_bytes(emp), gen.reference_to_bytes(emp))
    assert fast.fallbacks == 1


def test_deterministic() -> None:
    gen = _gen("cs_manager_monthly_kpi")
    a = CompiledWorkbook(gen).to_bytes(example_employee(gen.form))
    b = CompiledWorkbook(_gen("cs_manager_monthly_kpi")).to_bytes(example_employee(gen.form))
    assert a == b
    with zipfile.ZipFile(io.BytesIO(a)) as z:
        assert {i.date_time for i in z.infolist()} == {(1980, 1, 1, 0, 0, 0)}


def test_a_form_that_differs_elsewhere_is_not_compiled() -> None:
    """A decoration that writes the employee's name into the document properties (a
    part the slots do not cover): the compile check refuses it and the generator keeps
    the reference writer."""

    def decorate(wb: Any, ws: Any, plan: Any) -> None:
        wb.set_custom_property("who", str(plan.cells[plan.names["hdr_name"]].value))

    gen = _gen("cs_dept")
    gen.decorate = decorate
    with pytest.raises(Unsupported, match="docProps"):
        CompiledWorkbook(gen)
    gen.writer = "fast"
    emp = example_employee(gen.form, name="王芳")
    with pytest.warns(RuntimeWarning, match="快速写法不可用"):
        data = gen.to_bytes(emp)
    assert gen.fast_unavailable
    assert data == gen.reference_to_bytes(emp)


# ------------------------------------------------------------------ filled forms


def test_answers_fill_inputs_and_cached_values() -> None:
    gen = _gen("cs_manager_monthly_kpi")
    fast = CompiledWorkbook(gen)
    emp = example_employee(gen.form)
    answers = {**G, "in_service_years_actual": "十四"}  # a text in a number cell
    data = fast.to_bytes(emp, answers)
    wb = openpyxl.load_workbook(io.BytesIO(data))
    wbv = openpyxl.load_workbook(io.BytesIO(data), data_only=True)
    meta = read_meta(wb)
    refs = {n: d.attr_text.split("!")[1].replace("$", "") for n, d in wb.defined_names.items()}
    ws, wsv = wb[meta["sheet"]], wbv[meta["sheet"]]
    assert ws[refs["in_sales_rate_actual"]].value == 110
    assert ws[refs["in_service_years_actual"]].value == "十四"
    assert wsv[refs["score_sales_rate"]].value == 133
    assert wsv[refs["score_service_years"]].value in ("", None)  # text scores nothing
    assert wsv[refs["total"]].value in ("", None)
    assert verify(SECRET, locked_cells_from_openpyxl(ws), meta)  # inputs are unlocked
    # typing over a formula: the dependents follow what was typed
    over = fast.to_bytes(emp, {**answers, "in_service_years_actual": 14, "ws_sales_rate": 50})
    wbv = openpyxl.load_workbook(io.BytesIO(over), data_only=True)
    assert wbv[meta["sheet"]][refs["ws_sales_rate"]].value == 50
    assert wbv[meta["sheet"]][refs["total"]].value == pytest.approx(50 + 35.5)
    with pytest.raises(KeyError):
        fast.to_bytes(emp, {"in_no_such_cell": 1})


# ------------------------------------------------------------------ the command


def test_generate_command_fast_equals_reference(tmp_path: Path) -> None:
    roster = tmp_path / "r.csv"
    roster.write_text(
        "工号,姓名,部门,岗位,考核人,sales_rate.target\n"
        "E1,张伟,客服部,客服经理,李娜,120\n"
        "E2,王芳,客服部,客服经理,李娜,80.5\n"
        "E3,Li Na-Longname Example,华东大区客户服务中心第三运营管理部,客服经理,赵强,120\n",
        encoding="utf-8",
    )
    kw = {"secret": SECRET}
    fast = generate_command("cs_manager_monthly_kpi", roster, "2026-11", tmp_path / "f", **kw)
    again = generate_command("cs_manager_monthly_kpi", roster, "2026-11", tmp_path / "g", **kw)
    ref = generate_command(
        "cs_manager_monthly_kpi", roster, "2026-11", tmp_path / "r", writer="reference", **kw
    )
    assert [p.name for p in fast] == [p.name for p in ref]
    for a, b, c in zip(fast, again, ref, strict=True):
        assert a.read_bytes() == b.read_bytes()
        assert_same_workbook(a.read_bytes(), c.read_bytes())


def _roster(path: Path, n: int) -> Path:
    """A roster of ``n`` employees in three departments, with targets of four tiers."""
    rows = ["工号,姓名,部门,岗位,考核人,sales_rate.target"]
    rows += [f"E{i:03d},员工{i},部门{i % 3},客服经理,李娜,{100 + i % 4 * 10}" for i in range(n)]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_generate_command_in_worker_processes(tmp_path: Path) -> None:
    roster = _roster(tmp_path / "r.csv", 40)
    one = generate_command(
        "cs_manager_monthly_kpi", roster, "2026-11", tmp_path / "one", secret=SECRET, workers=1
    )
    two = generate_command(
        "cs_manager_monthly_kpi", roster, "2026-11", tmp_path / "two", secret=SECRET, workers=2
    )
    assert [p.name for p in one] == [p.name for p in two]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(one, two, strict=True))


def test_generate_command_in_fresh_worker_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where workers are not forked, each rebuilds the generator and gets its
    employees pickled: the same files."""
    import multiprocessing

    if "spawn" not in multiprocessing.get_all_start_methods():
        pytest.skip("no spawn start method")
    roster = _roster(tmp_path / "r.csv", 12)
    one = generate_command(
        "cs_manager_monthly_kpi", roster, "2026-11", tmp_path / "one", secret=SECRET, workers=1
    )
    spawn = multiprocessing.get_context("spawn")
    monkeypatch.setattr(multiprocessing, "get_context", lambda method=None: spawn)
    two = generate_command(
        "cs_manager_monthly_kpi", roster, "2026-11", tmp_path / "two", secret=SECRET, workers=2
    )
    assert [p.name for p in one] == [p.name for p in two]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(one, two, strict=True))


def test_xlsm_form_fast(tmp_path: Path) -> None:
    pytest.importorskip("kpi_excel.vba")
    roster = tmp_path / "r.csv"
    roster.write_text("工号,姓名,部门,岗位,考核人\nE1,张伟,客服部,经理,李娜\n", encoding="utf-8")
    (fast,) = generate_command(
        "cs_manager_monthly_kpi", roster, "2026-11", tmp_path / "f", xlsm=True
    )
    (ref,) = generate_command(
        "cs_manager_monthly_kpi", roster, "2026-11", tmp_path / "r", xlsm=True, writer="reference"
    )
    with zipfile.ZipFile(fast) as z:
        assert "xl/vbaProject.bin" in z.namelist()
    assert_same_workbook(fast.read_bytes(), ref.read_bytes())


# ------------------------------------------------------------------ the zip writer


def test_zip_writer_reads_back() -> None:
    entries = [
        ZipEntry.deflate("a.xml", b"<a/>" * 100),
        ZipEntry.deflate("b/c.txt", "中文".encode()),
    ]
    data = zip_bytes([entries[0], (entries[1], entries[1].local())])
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        assert z.testzip() is None
        assert z.read("a.xml") == b"<a/>" * 100 and z.read("b/c.txt").decode() == "中文"


def test_worker_failure_leaves_output_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import multiprocessing

    if multiprocessing.get_start_method() != "fork":
        pytest.skip("the failure is injected by patching the parent before the workers fork")
    from kpi_excel.errors import KpiExcelError

    rows = ["工号,姓名,部门,岗位,考核人"] + [
        f"E{i:03d},员工{i},客服部,经理,李娜" for i in range(30)
    ]
    roster = tmp_path / "r.csv"
    roster.write_text("\n".join(rows) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    real = FormGenerator.write_file

    def flaky(self: FormGenerator, emp: Employee, path: str) -> None:
        if emp.employee_id == "E017":
            raise OSError(28, "No space left on device", path)
        real(self, emp, path)

    monkeypatch.setattr(FormGenerator, "write_file", flaky)
    with pytest.raises(KpiExcelError):
        generate_command("cs_manager_monthly_kpi", roster, "2026-11", out, workers=2)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []
