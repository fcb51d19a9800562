"""Generation: golden files, determinism, names, cached values, meta, protection,
validation, print setup, all-or-nothing output, and the LibreOffice round trip."""

from __future__ import annotations

import io
import json
import os
import random
import re
import zipfile
from decimal import Decimal
from pathlib import Path

import openpyxl
import pytest
from xlsx_compare import compare_xlsx

import kpi_excel.generate as generate_mod
from kpi_excel import _lo
from kpi_excel.errors import KpiExcelError, SpecError
from kpi_excel.generate import (
    FormGenerator,
    form_filename,
    generate_command,
    parse_period,
    safe_filename,
)
from kpi_excel.layout import formulas_of
from kpi_excel.meta import (
    CHUNK,
    DEFAULT_SECRET,
    canonical,
    fingerprint,
    locked_cells_from_openpyxl,
    read_meta,
    verify,
)
from kpi_excel.roster import Employee, example_employee, initial_values
from kpi_excel.score import NA_NO, NA_YES, evaluate
from kpi_excel.spec.load import builtin_forms, load_form
from kpi_excel.spec.text import placeholders, render_text

GOLDEN = Path(__file__).parent / "golden"
PERIOD = {"monthly": "2026-11", "quarterly": "2026-Q4", "yearly": "2026"}
TEMPLATES = list(builtin_forms())
SECRET = b"test-secret"


def _gen(tid: str, **kw: object) -> FormGenerator:
    form = load_form(builtin_forms()[tid])
    kw.setdefault("company", "示例科技有限公司")
    kw.setdefault("secret", SECRET)
    return FormGenerator.from_ref(tid, PERIOD[form.period], **kw)  # type: ignore[arg-type]


def _book(data: bytes, **kw: object) -> openpyxl.Workbook:
    return openpyxl.load_workbook(io.BytesIO(data), **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module", params=TEMPLATES)
def made(request: pytest.FixtureRequest) -> tuple[FormGenerator, Employee, bytes]:
    gen = _gen(request.param)
    emp = example_employee(gen.form)
    return gen, emp, gen.to_bytes(emp)


# ------------------------------------------------------------------ golden files


@pytest.mark.parametrize("tid", TEMPLATES)
def test_golden(tid: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The generated form of each built-in template, part by part.

    Regenerate on purpose with ``KPI_EXCEL_REGEN_GOLDEN=1 pytest tests/test_generate.py
    -k golden`` and review the diff of the .xlsx parts before committing.
    """
    monkeypatch.setattr(generate_mod, "__version__", "0.0.0-golden")
    gen = _gen(tid)
    path = tmp_path / f"{tid}.xlsx"
    gen.write(example_employee(gen.form), path)
    golden = GOLDEN / f"{tid}.xlsx"
    if os.environ.get("KPI_EXCEL_REGEN_GOLDEN"):
        GOLDEN.mkdir(exist_ok=True)
        golden.write_bytes(path.read_bytes())
        return
    if not golden.exists():
        pytest.skip(f"no golden file for {tid}: run with KPI_EXCEL_REGEN_GOLDEN=1 and review it")
    diff = compare_xlsx(path, golden)
    assert diff is None, diff


def test_compare_reports_a_difference(tmp_path: Path) -> None:
    gen = _gen("cs_manager_monthly_kpi")
    a, b = tmp_path / "a.xlsx", tmp_path / "b.xlsx"
    gen.write(example_employee(gen.form), a)
    gen.write(example_employee(gen.form, name="王芳"), b)
    diff = compare_xlsx(a, b)
    assert diff is not None and "xl/sharedStrings.xml" in diff and "王芳" in diff
    assert compare_xlsx(a, a) is None


# ------------------------------------------------------------------ determinism


def test_same_input_same_bytes(made: tuple[FormGenerator, Employee, bytes]) -> None:
    gen, emp, data = made
    assert gen.to_bytes(emp) == data
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        assert {i.date_time for i in z.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        core = z.read("docProps/core.xml").decode()
    first_day = gen.period.first_day
    assert f"{first_day}T00:00:00Z" in core


def test_generate_command_deterministic(tmp_path: Path) -> None:
    roster = tmp_path / "r.csv"
    roster.write_text(
        "工号,姓名,部门,岗位,考核人\nE1,张伟,客服部,客服经理,李娜\n", encoding="utf-8"
    )
    a = generate_command("cs_manager_monthly_kpi", roster, "2026-11", tmp_path / "a")
    b = generate_command("cs_manager_monthly_kpi", roster, "2026-11", tmp_path / "b")
    assert [p.name for p in a] == ["2026-11_客服部_张伟_E1.xlsx"]
    assert a[0].read_bytes() == b[0].read_bytes()


# ------------------------------------------------------------------ names and formulas

_A1 = re.compile(r"(?<![A-Za-z_])\$?[A-Z]{1,3}\$?[0-9]+(?![A-Za-z_0-9(])")


def _outside_strings(formula: str) -> str:
    return re.sub(r'"(?:[^"]|"")*"', '""', formula)


def test_every_cell_named_and_formulas_use_names(
    made: tuple[FormGenerator, Employee, bytes],
) -> None:
    gen, _emp, data = made
    wb = _book(data)
    meta = read_meta(wb)
    names = json.loads(meta["names_json"])
    defined = {n: wb.defined_names[n].attr_text for n in wb.defined_names}
    assert names == defined
    for inp in gen.cf.inputs:
        assert inp.name in defined, inp.name
    for cell in gen.cf.cells:
        assert cell.name in defined, cell.name
    ws = wb[meta["sheet"]]
    for name, ref in defined.items():
        assert ref.startswith(f"'{meta['sheet']}'!$"), (name, ref)
    formulas = formulas_of(gen.cf)
    for cell in gen.cf.cells:
        coord = defined[cell.name].split("!")[1].replace("$", "")
        got = ws[coord].value
        assert got == formulas[cell.name]
        assert not _A1.search(_outside_strings(got[1:])), f"{cell.name} uses a cell address: {got}"


def test_cached_values_are_the_python_engine(made: tuple[FormGenerator, Employee, bytes]) -> None:
    gen, emp, data = made
    env = evaluate(gen.cf, initial_values(gen.cf.inputs, emp))
    wb = _book(data, data_only=True)
    meta = read_meta(wb)
    refs = json.loads(meta["names_json"])
    ws = wb[meta["sheet"]]
    for cell in gen.cf.cells:
        got = ws[refs[cell.name].split("!")[1].replace("$", "")].value
        want = env[cell.name]
        if isinstance(want, Decimal):
            assert got == pytest.approx(float(want), abs=1e-12), cell.name
        elif want is None:
            assert got in (0, None), cell.name
        else:
            assert (got or "") == want, cell.name


def test_targets_are_written_locked(made: tuple[FormGenerator, Employee, bytes]) -> None:
    gen, emp, data = made
    wb = _book(data)
    meta = read_meta(wb)
    refs = json.loads(meta["names_json"])
    ws = wb[meta["sheet"]]
    roster = json.loads(meta["roster_json"])
    for inp in gen.cf.inputs:
        cell = ws[refs[inp.name].split("!")[1].replace("$", "")]
        if inp.spec.source == "roster":
            assert cell.protection.locked
            assert Decimal(str(cell.value)) == emp.targets.get(inp.name, emp.q)
            if inp.name != "hdr_q":
                assert Decimal(roster["targets"][inp.name]) == emp.targets[inp.name]
        else:
            assert not cell.protection.locked, inp.name
            assert cell.value is None
            assert cell.fill.fgColor.rgb.endswith("FFF2CC")


# ------------------------------------------------------------------ protection, validation, print


def test_protection_validation_print(made: tuple[FormGenerator, Employee, bytes]) -> None:
    gen, _emp, data = made
    wb = _book(data)
    meta = read_meta(wb)
    ws = wb[meta["sheet"]]
    assert ws.protection.sheet and ws.protection.password  # hashed 'kpi'
    unlocked = {
        c.coordinate
        for row in ws.iter_rows()
        for c in row
        if c.value is None and not c.protection.locked
    }
    dv_cells: dict[str, object] = {}
    for dv in ws.data_validations.dataValidation:
        for rng in dv.sqref.ranges:
            dv_cells[rng.coord] = dv
        assert dv.promptTitle is None or len(dv.promptTitle) <= 32
        assert dv.prompt is None or len(dv.prompt) <= 255
        assert dv.error and "请" in dv.error
    tops = {c for c in unlocked if c in dv_cells}
    form_inputs = [i for i in gen.cf.inputs if i.spec.source == "form"]
    assert len(tops) >= len(form_inputs)
    refs = json.loads(meta["names_json"])
    for inp in form_inputs:
        coord = refs[inp.name].split("!")[1].replace("$", "")
        dv = dv_cells[coord]
        if inp.spec.kind in {"level", "rating", "choice"}:
            assert dv.type == "list"
        elif inp.spec.kind == "count":
            assert dv.type == "whole"
        elif inp.spec.kind in {"number", "percent"}:
            assert dv.type == "decimal"
    ps = ws.page_setup
    assert ps.paperSize == 9 and ps.fitToWidth in (1, None) and ps.fitToHeight == 0
    assert ws.sheet_properties.pageSetUpPr.fitToPage
    assert ps.orientation == gen.form.orientation
    assert ws.print_options.horizontalCentered
    assert ws.print_title_rows and ws.print_area
    assert ws.freeze_panes
    assert wb["_meta"].sheet_state == "veryHidden"


def test_header_roster_fields_named(made: tuple[FormGenerator, Employee, bytes]) -> None:
    gen, emp, data = made
    wb = _book(data)
    refs = json.loads(read_meta(wb)["names_json"])
    ws = wb[read_meta(wb)["sheet"]]
    for h in gen.form.header:
        if h.source in emp.fields:
            coord = refs[f"hdr_{h.source}"].split("!")[1].replace("$", "")
            assert ws[coord].value == emp.fields[h.source]
        if h.source == "period":
            coord = refs["hdr_period"].split("!")[1].replace("$", "")
            assert ws[coord].value == gen.period.text


# ------------------------------------------------------------------ meta and fingerprint


def test_roster_json_is_json_dumps() -> None:
    """The roster record of ``_meta`` is ``json.dumps(..., ensure_ascii=False,
    sort_keys=True)`` (its encoder is made once)."""
    emp = Employee(
        7,
        "名单.csv",
        {"name": '欧阳 "娜娜"\n\\', "employee_id": "E1", "department": "A&B<部>\t", "z": "\x07"},
        q=Decimal("8123.450"),
        targets={"in_b_target": Decimal("1E+2"), "in_a_target": Decimal("0.125")},
    )
    gen = FormGenerator.from_ref("cs_manager_monthly_kpi", "2026-11")
    got = json.loads(gen.meta_for(emp, "{}", "s")["roster_json"])
    assert gen.meta_for(emp, "{}", "s")["roster_json"] == json.dumps(
        got, ensure_ascii=False, sort_keys=True
    )
    assert got["fields"] == emp.fields and got["targets"] == {
        "in_a_target": "0.125",
        "in_b_target": "100",
    }
    for value in [got, {"b": [1, 2.5, None, True], "a": {"y": "😀", "x": "\ud800"}}, "\u2028"]:
        assert generate_mod._ROSTER_JSON.encode(value) == json.dumps(
            value, ensure_ascii=False, sort_keys=True
        )


def test_meta_keys_and_fingerprint(made: tuple[FormGenerator, Employee, bytes]) -> None:
    gen, emp, data = made
    wb = _book(data)
    meta = read_meta(wb)
    assert meta["format"] == "kpi-excel-form/1"
    assert meta["template_id"] == gen.form.id and meta["template_version"] == gen.form.version
    assert meta["employee_id"] == emp.employee_id and meta["period"] == gen.period.key
    assert meta["template_yaml"] == gen.template_text
    assert meta["generated_at"] == f"{gen.period.first_day}T00:00:00"
    assert meta["fingerprint_alg"] == "HMAC-SHA256"
    ws = wb[meta["sheet"]]
    cells = locked_cells_from_openpyxl(ws)
    assert verify(SECRET, cells, meta)
    assert not verify(DEFAULT_SECRET, cells, meta)
    # any locked cell changed, or any meta value, breaks it
    tampered = [(c, "99" if i == 5 else v) for i, (c, v) in enumerate(cells)]
    assert not verify(SECRET, tampered, meta)
    assert not verify(SECRET, cells, {**meta, "employee_id": "E9999"})


def test_fingerprint_ignores_filled_inputs() -> None:
    gen = _gen("cs_manager_monthly_kpi")
    wb = _book(gen.to_bytes(example_employee(gen.form)))
    meta = read_meta(wb)
    ws = wb[meta["sheet"]]
    refs = json.loads(meta["names_json"])
    ws[refs["in_sales_rate_actual"].split("!")[1].replace("$", "")] = 123
    assert verify(SECRET, locked_cells_from_openpyxl(ws), meta)


def test_long_template_yaml_continues_in_more_columns(tmp_path: Path) -> None:
    src = builtin_forms()["cs_manager_monthly_kpi"].read_text(encoding="utf-8")
    big = tmp_path / "big.yaml"
    big.write_text(src + "\n# " + "长" * (CHUNK + 500) + "\n", encoding="utf-8")
    gen = FormGenerator.from_ref(big, "2026-11", secret=SECRET)
    wb = _book(gen.to_bytes(example_employee(gen.form)))
    row = next(r for r in wb["_meta"].iter_rows() if r[0].value == "template_yaml")
    assert len(row[1].value) == CHUNK and row[2].value
    meta = read_meta(wb)
    assert meta["template_yaml"] == gen.template_text
    assert verify(SECRET, locked_cells_from_openpyxl(wb[meta["sheet"]]), meta)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (Decimal("0.65"), 0.65),
        (Decimal("100"), 100.0),
        (Decimal("100"), 100),
        (Decimal("4.60"), 4.6),
        (Decimal("1234567.123456789"), 1234567.123456789),
        ('=IF(ISNUMBER(total),1,"")', '=if( isnumber( TOTAL ), 1, "")'),
        (True, True),
    ],
)
def test_canonical_equal(a: object, b: object) -> None:
    assert canonical(a) == canonical(b)


def test_canonical_keeps_strings_inside_formulas() -> None:
    assert canonical('=IF(a="是 否",1,0)') != canonical('=IF(a="是否",1,0)')
    assert canonical('=IF(a="x",1,0)') != canonical('=IF(a="X",1,0)')
    assert canonical("0.1") == "0.1" and canonical(0.1) == "0.1"
    assert canonical(False) == "FALSE"


def test_fingerprint_is_hmac_over_documented_text() -> None:
    import hashlib
    import hmac

    from kpi_excel.meta import fingerprint_text

    cells = [("A1", "标题"), ("B2", Decimal("0.65")), ("C3", "=total")]
    meta = {"format": "kpi-excel-form/1", "b": "x\ny", "fingerprint": "ignored"}
    text = fingerprint_text("1.0", cells, meta)
    assert text == (
        "kpi-excel-fingerprint/1\ntemplate_version\t1.0\n[cells]\nA1\t标题\nB2\t0.65\nC3\t=TOTAL\n"
        "[meta]\nb\tx\\ny\nformat\tkpi-excel-form/1\n"
    )
    want = hmac.new(b"k", text.encode(), hashlib.sha256).hexdigest()
    assert fingerprint(b"k", "1.0", cells, meta) == want


def test_secret_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from kpi_excel.meta import resolve_secret

    monkeypatch.delenv("KPI_EXCEL_SECRET", raising=False)
    assert resolve_secret(None) == DEFAULT_SECRET
    monkeypatch.setenv("KPI_EXCEL_SECRET", "s3cret")
    assert resolve_secret(None) == b"s3cret"
    assert resolve_secret(b"arg") == b"arg"


# ------------------------------------------------------------------ periods and file names


@pytest.mark.parametrize(
    ("text", "kind", "key", "shown"),
    [
        ("2026-11", "monthly", "2026-11", "2026年11月"),
        ("2026-1", "monthly", "2026-01", "2026年1月"),
        ("2026年11月", "monthly", "2026-11", "2026年11月"),
        ("2026-Q4", "quarterly", "2026-Q4", "2026年第4季度"),
        ("2026q2", "quarterly", "2026-Q2", "2026年第2季度"),
        ("2026", "yearly", "2026", "2026年度"),
    ],
)
def test_parse_period(text: str, kind: str, key: str, shown: str) -> None:
    p = parse_period(text, kind)
    assert (p.key, p.text) == (key, shown)


@pytest.mark.parametrize(
    ("text", "kind", "hint"),
    [
        ("2026-Q4", "monthly", "2026-11"),
        ("2026-11", "quarterly", "2026-Q4"),
        ("2026-11", "yearly", "2026"),
        ("2026-13", "monthly", "2026-11"),
        ("十一月", "monthly", "2026-11"),
    ],
)
def test_period_mismatch_is_explained(text: str, kind: str, hint: str) -> None:
    with pytest.raises(KpiExcelError) as e:
        parse_period(text, kind)
    assert hint in str(e.value) and "考核" in str(e.value)


@pytest.mark.parametrize(
    ("stem", "want"),
    [
        ('a<b>c:d"e/f\\g|h?i*j', "a_b_c_d_e_f_g_h_i_j.xlsx"),
        ("CON", "CON_.xlsx"),
        ("com1.txt", "com1.txt_.xlsx"),
        ("名字. . ", "名字.xlsx"),
        ("tab\there\x01", "tab_here_.xlsx"),
    ],
)
def test_safe_filename(stem: str, want: str) -> None:
    assert safe_filename(stem) == want


def test_form_filename_rule() -> None:
    emp = Employee(2, "r", {"employee_id": "E1001", "name": "张伟", "department": "客服/售后部"})
    assert form_filename("2026-11", emp) == "2026-11_客服_售后部_张伟_E1001.xlsx"
    long = Employee(2, "r", {"employee_id": "E1002", "name": "名" * 80, "department": "部" * 80})
    n = form_filename("2026-Q4", long)
    assert len(n) <= 100 and n.startswith("2026-Q4_部") and n.endswith("_E1002.xlsx")


def test_files_with_the_same_name_never_overwrite_each_other(tmp_path: Path) -> None:
    """Names that collide (characters a file name cannot hold) get _2, _3 …; a
    numbered name is never one another employee has, and a long name keeps its number."""
    long = "部" * 120
    roster = tmp_path / "r.csv"
    roster.write_text(
        "工号,姓名,部门,岗位,考核人\n"
        "A/1,张伟,客服部,经理,李娜\n"  # A/1 and A_1 are one file name
        "A_1,张伟,客服部,经理,李娜\n"
        "A_1_2,张伟,客服部,经理,李娜\n"  # the name the second one would get
        f"L/1,王芳,{long},经理,李娜\n"  # as long as a name may be
        f"L_1,王芳,{long},经理,李娜\n",
        encoding="utf-8",
    )
    made = generate_command("cs_manager_monthly_kpi", roster, "2026-11", tmp_path / "out")
    names = [p.name for p in made]
    assert len({n.casefold() for n in names}) == len(names) == 5, names
    assert len(list((tmp_path / "out").iterdir())) == 5
    assert all(len(n) <= 100 for n in names)
# ------------------------------------------------------------------ all or nothing


def test_failure_midway_leaves_output_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    roster = tmp_path / "r.csv"
    roster.write_text(
        "工号,姓名,部门,岗位,考核人\nE1,张伟,客服部,经理,李娜\nE2,王芳,客服部,经理,李娜\n",
        encoding="utf-8",
    )
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    real = FormGenerator.write_file
    calls = []

    def flaky(self: FormGenerator, emp: Employee, path: str) -> None:
        calls.append(emp.employee_id)
        if len(calls) == 2:
            raise OSError(28, "No space left on device", path)
        real(self, emp, path)

    monkeypatch.setattr(FormGenerator, "write_file", flaky)
    with pytest.raises(KpiExcelError):
        generate_command("cs_manager_monthly_kpi", roster, "2026-11", out)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []


def test_new_output_folder_appears_whole(tmp_path: Path) -> None:
    roster = tmp_path / "r.csv"
    roster.write_text(
        "工号,姓名,部门,岗位,考核人\nE1,张伟,客服部,经理,李娜\nE2,王芳,客服部,经理,李娜\n",
        encoding="utf-8",
    )
    paths = generate_command("cs_manager_monthly_kpi", roster, "2026-11", tmp_path / "new" / "out")
    assert sorted(p.name for p in (tmp_path / "new" / "out").iterdir()) == sorted(
        p.name for p in paths
    )


def test_xlsm_form_has_the_button_and_keeps_its_fingerprint(tmp_path: Path) -> None:
    pytest.importorskip("kpi_excel.vba")
    roster = tmp_path / "r.csv"
    roster.write_text("工号,姓名,部门,岗位,考核人\nE1,张伟,客服部,经理,李娜\n", encoding="utf-8")
    (path,) = generate_command(
        "cs_manager_monthly_kpi", roster, "2026-11", tmp_path / "o", xlsm=True, secret=SECRET
    )
    assert path.suffix == ".xlsm"
    with zipfile.ZipFile(path) as z:
        assert "xl/vbaProject.bin" in z.namelist()
    wb = openpyxl.load_workbook(path, keep_vba=True)
    meta = read_meta(wb)
    assert verify(SECRET, locked_cells_from_openpyxl(wb[meta["sheet"]]), meta)


# ------------------------------------------------------------------ text with targets


def test_rule_text_rendered_with_targets() -> None:
    gen = _gen("customer_manager_kpi_scale")
    emp = example_employee(gen.form)
    emp.targets["in_stock_assets_target"] = Decimal(500)
    wb = _book(gen.to_bytes(emp))
    ws = wb[read_meta(wb)["sheet"]]
    texts = [c.value for row in ws.iter_rows() for c in row if isinstance(c.value, str)]
    assert any("考核期内存量客户资产达到500万元以上" in t for t in texts)
    assert not any("{{" in t for t in texts)


def test_text_placeholders_are_strict() -> None:
    assert placeholders("达到{{ target }}万元，{{ x }}") == {"target", "x"}
    assert render_text("达到{{ target }}万元", {"target": "500"}) == "达到500万元"
    with pytest.raises(SpecError) as e:
        render_text("达到{{ targte }}万元", {"target": "500"}, "t.yaml 指标 a")
    assert "targte" in e.value.report()
    with pytest.raises(SpecError):  # sandboxed: no attribute walking to Python internals
        render_text("{{ target.__class__.__mro__ }}", {"target": "500"})


def test_level_descriptors_visible() -> None:
    gen = _gen("cs_dept_manager")
    wb = _book(gen.to_bytes(example_employee(gen.form)))
    ws = wb[read_meta(wb)["sheet"]]
    text = "\n".join(c.value for row in ws.iter_rows() for c in row if isinstance(c.value, str))
    for _s, ind in gen.form.indicators():
        for spec in ind.inputs.values():
            for d in spec.choices.values():
                assert "".join(d.split()) in "".join(text.split()), d


# ------------------------------------------------------------------ the engine round trip


def _random_fill(gen: FormGenerator, rng: random.Random) -> dict[str, object]:
    fills: dict[str, object] = {}
    for inp in gen.cf.inputs:
        spec = inp.spec
        if spec.source != "form":
            continue
        if inp.role == "na":
            fills[inp.name] = rng.choice([NA_YES, NA_NO, NA_NO, None])
            continue
        if inp.role == "rater" and rng.random() < 0.7:
            continue
        if spec.kind in {"level", "rating", "choice"}:
            fills[inp.name] = rng.choice(list(spec.choices))
            continue
        if spec.kind in {"text", "date"}:
            continue
        if rng.random() < 0.05:
            fills[inp.name] = rng.choice(["八十", "90分", None])
            continue
        lo = float(spec.min) if spec.min is not None else 0.0
        hi = float(spec.max) if spec.max is not None else lo + 500
        hi = min(hi, lo + 2000)
        if spec.kind == "count":
            fills[inp.name] = rng.randint(int(lo), int(min(hi, lo + 12)))
        elif spec.kind == "percent":
            fills[inp.name] = round(rng.uniform(lo / 100, hi / 100), 4)
        else:
            fills[inp.name] = round(rng.uniform(lo, hi), rng.choice([0, 1, 2]))
    return fills


def _as_value(v: object) -> object:
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    return Decimal(str(v))


@pytest.mark.engine
def test_libreoffice_round_trip(tmp_path: Path) -> None:
    """Fill every template's form by defined name as a user would, recalculate in
    LibreOffice, save, and compare with the Python engine on the same inputs; the
    fingerprint must survive LibreOffice's save."""
    jobs, expected = [], []
    for tid in TEMPLATES:
        gen = _gen(tid)
        emp = example_employee(gen.form)
        src = tmp_path / f"{tid}.xlsx"
        gen.write(emp, src)
        rng = random.Random(tid)
        for k in range(3):
            fills = _random_fill(gen, rng)
            names = [c.name for c in gen.cf.cells]
            jobs.append(_lo.Job(src=src, fills=fills, read=names, out_name=f"{tid}_{k}.xlsx"))
            values = {
                **initial_values(gen.cf.inputs, emp),
                **{n: _as_value(v) for n, v in fills.items()},
            }
            expected.append(evaluate(gen.cf, values))
    results = _lo.recalc(jobs, tmp_path / "lo")
    problems = []
    for job, res, env in zip(jobs, results, expected, strict=True):
        assert res.error is None, res.error
        for name in job.read:
            want, got = env[name], res.values.get(name)
            if isinstance(want, Decimal):
                ok = isinstance(got, float) and abs(got - float(want)) < 1e-9
            elif want is None:
                ok = got in (0, 0.0, None)
            else:
                ok = got == want
            if not ok:
                problems.append(f"{job.out_name} {name}: python {want!r} libreoffice {got!r}")
        wb = openpyxl.load_workbook(res.out)
        meta = read_meta(wb)
        assert verify(SECRET, locked_cells_from_openpyxl(wb[meta["sheet"]]), meta), job.out_name
    assert not problems, "\n".join(problems[:40])
