"""The paper layout: merges, borders, row heights, the hidden calculation area, and
(with LibreOffice) the printed PDF: A4, one page wide, CJK font, titles on every page."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from kpi_excel import _lo
from kpi_excel.generate import FormGenerator
from kpi_excel.layout import (
    FIELD_KEYS,
    INPUT_FILL,
    SheetPlan,
    _line_height,
    lines_needed,
    sheet_title,
)
from kpi_excel.roster import example_employee, initial_values
from kpi_excel.spec.load import builtin_forms, load_form

PERIOD = {"monthly": "2026-11", "quarterly": "2026-Q4", "yearly": "2026"}
TEMPLATES = list(builtin_forms())


def _gen(tid: str) -> FormGenerator:
    form = load_form(builtin_forms()[tid])
    return FormGenerator.from_ref(tid, PERIOD[form.period], company="示例科技有限公司")


@pytest.fixture(scope="module", params=TEMPLATES)
def planned(request: pytest.FixtureRequest) -> tuple[FormGenerator, SheetPlan]:
    gen = _gen(request.param)
    plan, _meta = gen.plan(example_employee(gen.form))
    return gen, plan


def _head_row(plan: SheetPlan) -> int:
    assert plan.print is not None
    return plan.print.repeat_rows[0]


def test_table_header_is_the_template_columns(planned: tuple[FormGenerator, SheetPlan]) -> None:
    gen, plan = planned
    head = _head_row(plan)
    labels = [plan.cells[(head, c)].value for c in range(plan.n_cols)]
    want = [c.label for c in gen.form.columns]
    # the generator may add a 填写项 (or 填写) column; the template's own stay in order
    assert [x for x in labels if x in want] == want
    assert plan.freeze == (head + 1, 0)


def test_every_table_cell_has_a_border(planned: tuple[FormGenerator, SheetPlan]) -> None:
    _gen_, plan = planned
    head = _head_row(plan)
    for (r, c), cell in plan.cells.items():
        if head <= r and c < plan.n_cols and dict(cell.style).get("border") == 0:
            # only the signature block under the table is drawn without a box
            signature = cell.value is None or "签字" in str(cell.value) or cell.value == "日期："
            assert r > head and signature, (
                r,
                c,
                cell.value,
            )
    for r in range(head, head + 3):
        for c in range(plan.n_cols):
            assert (r, c) in plan.cells, (r, c)


def test_merges_are_disjoint_and_inside_the_sheet(planned: tuple[FormGenerator, SheetPlan]) -> None:
    _gen_, plan = planned
    seen: set[tuple[int, int]] = set()
    for r1, c1, r2, c2 in plan.merges:
        assert r1 <= r2 and c1 <= c2
        for r in range(r1, r2 + 1):
            for c in range(c1, c2 + 1):
                assert (r, c) not in seen, f"overlapping merge at {(r, c)}"
                seen.add((r, c))


def test_indicator_cells_merge_down_their_sub_rows(
    planned: tuple[FormGenerator, SheetPlan],
) -> None:
    gen, plan = planned
    head = _head_row(plan)
    keys = [plan.cells[(head, c)].value for c in range(plan.n_cols)]
    by_label = {c.label: c.key for c in gen.form.columns}
    name_col = next((i for i, lab in enumerate(keys) if by_label.get(lab) == "name"), None)
    if name_col is None:
        pytest.skip("no name column")
    multi = {(r1, c1): r2 for r1, c1, r2, _c2 in plan.merges if c1 == name_col}
    # the name of an indicator with several inputs in one column spans its sub-rows
    for _s, ind in gen.form.indicators():
        cols: dict[str | None, int] = {}
        for spec in ind.inputs.values():
            cols[spec.column] = cols.get(spec.column, 0) + 1
        rows = max(cols.values(), default=1)
        if rows > 1:
            top = next(
                r
                for (r, c), cell in plan.cells.items()
                if c == name_col and cell.value and ind.name in str(cell.value)
            )
            assert multi.get((top, name_col), top) - top + 1 >= rows, ind.id


def test_row_heights_fit_the_text(planned: tuple[FormGenerator, SheetPlan]) -> None:
    _gen_, plan = planned
    spans = {(r1, c1): (r2, c2) for r1, c1, r2, c2 in plan.merges}
    for (r, c), cell in plan.cells.items():
        if not isinstance(cell.value, str) or c >= plan.n_cols:
            continue
        r2, c2 = spans.get((r, c), (r, c))
        width = sum(plan.widths[k] for k in range(c, c2 + 1))
        size = dict(cell.style).get("font_size", 10)
        need = lines_needed(cell.value, width, size) * _line_height(size)
        have = sum(plan.heights[k] for k in range(r, r2 + 1))
        assert have >= need, (cell.value[:30], have, need)


def test_calculation_area_is_hidden_and_outside_the_print_area(
    planned: tuple[FormGenerator, SheetPlan],
) -> None:
    gen, plan = planned
    assert plan.print is not None
    r1, c1, r2, c2 = plan.print.area
    assert (r1, c1) == (0, 0) and c2 == plan.n_cols - 1
    for name, (r, c) in plan.names.items():
        if c > c2:
            assert c in plan.hidden_cols, name
            assert plan.cells[(r, c)].locked
    for cell in gen.cf.cells:
        assert cell.name in plan.names
    # the form's own result columns hold their cells in view
    keys = {c.key for c in gen.form.columns}
    for _s, ind in gen.form.indicators():
        if "weighted" in keys:
            assert plan.names[f"ws_{ind.id}"][1] <= c2
    assert plan.names["total"][1] <= c2


def test_inputs_unlocked_and_yellow_everything_else_locked(
    planned: tuple[FormGenerator, SheetPlan],
) -> None:
    gen, plan = planned
    unlocked = {(r, c) for (r, c), cell in plan.cells.items() if not cell.locked}
    want = {plan.names[i.name] for i in gen.cf.inputs if i.spec.source == "form"}
    want |= {rc for n, rc in plan.names.items() if n.startswith("hdr_input_")}
    tops = {rc for rc in unlocked if plan.cells[rc].name or rc in want}
    assert want <= tops
    for rc in unlocked:
        assert dict(plan.cells[rc].style).get("bg_color") == INPUT_FILL
    for n, rc in plan.names.items():
        if n in {c.name for c in gen.cf.cells}:
            assert plan.cells[rc].locked


def test_values_fill_from_targets() -> None:
    gen = _gen("cs_manager_monthly_kpi")
    emp = example_employee(gen.form)
    plan, _ = gen.plan(emp)
    values = initial_values(gen.cf.inputs, emp)
    for name, v in values.items():
        assert plan.cells[plan.names[name]].value == v


def test_sheet_title() -> None:
    assert sheet_title("客户服务部经理-绩效考核表") == "客户服务部经理-绩效考核表"
    assert sheet_title("a/b:c[d]") == "a_b_c_d_"
    assert len(sheet_title("很" * 40)) == 31
    assert sheet_title("_meta") == "考核表"


def test_field_keys_documented() -> None:
    assert {
        "seq",
        "section",
        "name",
        "method",
        "target_text",
        "weight",
        "points",
        "unit",
        "period_text",
        "data_source",
        "input_label",
        "system",
        "score",
        "weighted",
    } <= FIELD_KEYS


# ------------------------------------------------------------------ the printed PDF


def _pdf_text(pdf: Path, page: int | None = None) -> str:
    args = ["pdftotext", "-layout"]
    if page is not None:
        args += ["-f", str(page), "-l", str(page)]
    return subprocess.run([*args, str(pdf), "-"], capture_output=True, text=True, check=True).stdout


def _squash(s: str) -> str:
    return re.sub(r"\s+", "", s)


@pytest.mark.engine
@pytest.mark.skipif(
    not shutil.which("pdfinfo") or not shutil.which("pdftotext"), reason="poppler-utils missing"
)
def test_pdf_is_a4_and_one_page_wide(tmp_path: Path) -> None:
    srcs, gens = [], {}
    for tid in TEMPLATES:
        gen = _gen(tid)
        path = tmp_path / f"{tid}.xlsx"
        gen.write(example_employee(gen.form), path)
        srcs.append(path)
        gens[path.stem] = gen
    pdfs = _lo.convert_pdf(srcs, tmp_path / "pdf")
    assert len(pdfs) == len(srcs)
    for pdf in pdfs:
        gen = gens[pdf.stem]
        info = subprocess.run(
            ["pdfinfo", str(pdf)], capture_output=True, text=True, check=True
        ).stdout
        w, h = map(float, re.search(r"Page size:\s+([\d.]+) x ([\d.]+) pts", info).groups())  # type: ignore[union-attr]
        pages = int(re.search(r"Pages:\s+(\d+)", info).group(1))  # type: ignore[union-attr]
        if gen.form.orientation == "landscape":
            w, h = h, w
        assert (round(w), round(h)) == (595, 842), f"{pdf.name}: not A4 ({info})"
        # one page wide: the first and the last column of the table are on every page
        # (a sheet cut into pages across would put the last column on a page of its own)
        first, last = gen.form.columns[0].label, gen.form.columns[-1].label
        for page in range(1, pages + 1):
            text = _squash(_pdf_text(pdf, page))
            if page == 1:
                assert _squash(gen.form.title) in text, pdf.name
            assert _squash(first) in text and _squash(last) in text, f"{pdf.name} page {page}"
        assert pages <= 4, f"{pdf.name}: {pages} pages"
        fonts = subprocess.run(["pdffonts", str(pdf)], capture_output=True, text=True).stdout
        assert "CJK" in fonts, f"{pdf.name}: no CJK font embedded\n{fonts}"
        # the last signature line is printed
        assert _squash(f"{gen.form.signatures[-1]}签字") in _squash(_pdf_text(pdf))
