"""Integrity of returned forms: what was edited where it should not be, and whose
form it really is.

Every case starts from a form filled with the good inputs ``G`` of
:mod:`test_collect` (total 121.95) and changes one thing, by openpyxl where a person
would use Excel, or in the workbook XML where Excel changes only that (renaming or
unhiding a sheet), so nothing else moves.
"""

from __future__ import annotations

import shutil
from decimal import Decimal
from pathlib import Path

import pytest
from hostile import META_PART, Forms, add_sheet, make_forms, members, rezip, xml_edit
from test_collect import T0, TEMPLATE, G, fill

from kpi_excel.collect import collect
from kpi_excel.generate import generate_command

FORM_SHEET = "客服经理岗位月度绩效考核表KPI"


@pytest.fixture(scope="module")
def forms(tmp_path_factory: pytest.TempPathFactory) -> Forms:
    return make_forms(tmp_path_factory.mktemp("forms"))


def one(tmp_path: Path, name: str, data: bytes, **kw):
    """Collect one file; its result."""
    d = tmp_path / "in"
    d.mkdir(exist_ok=True)
    (d / name).write_bytes(data)
    coll = collect([d], out=tmp_path / "s.xlsx", **kw)
    (f,) = coll.files
    return f


def first_error(f) -> tuple[str, str]:
    return f.errors[0].kind, f.errors[0].message


# ------------------------------------------------------------- locked content


@pytest.mark.parametrize(
    ("coord", "value", "kind", "words"),
    [
        ("E7", 0.1, "locked_changed", "原为“5%”，现为“10%”"),  # weight
        ("I6", 80, "locked_changed", "原为“100”，现为“80”"),  # target (from the roster)
        ("C7", "客户满意度调查平均分，目标4分", "locked_changed", "客户满意度评分"),  # rule text
        ("M6", "=95", "formula_overwritten", "公式被改为 =95"),  # another formula
        ("M13", 95, "formula_overwritten", "公式被覆盖成了固定值 95"),  # a number typed over
    ],
    ids=["weight", "target", "rule-text", "formula-edited", "formula-typed-over"],
)
def test_locked_edits_are_rejected(
    forms: Forms, tmp_path: Path, coord: str, value: object, kind: str, words: str
) -> None:
    f = fill(forms.blank["E001"], tmp_path / "x" / "a.xlsx", G, edits={coord: value})
    res = one(tmp_path, "a.xlsx", f.read_bytes())
    assert res.status == "rejected"
    got_kind, message = first_error(res)
    assert got_kind == kind and words in message, message
    assert res.errors[0].address.endswith(f"!{coord}")
    assert res.total == Decimal("121.95")  # recomputed from the inputs all the same


# Typed over a formula and nothing else: the locked cells with those formulas put back
# are the sheet as generated (their fingerprint proves it), so the sheet need not be
# rebuilt to compare with. Every case is checked both ways: the same result, whether
# the sheet was rebuilt or not.
OVER_CASES: dict[str, tuple[dict[str, object], str | None, bool]] = {
    "total-typed-over": ({"M13": 95}, None, True),
    "formula-edited": ({"M6": "=95"}, None, True),
    "two-formulas": ({"M6": 90, "M13": 95}, None, True),
    "total-emptied": ({"M13": None}, None, True),
    "emptied-mid-row": ({"K6": None, "O9": None}, None, True),  # cells after them in the row
    "total-and-weight": ({"M13": 95, "E7": 0.1}, None, False),
    "total-and-rule-text": ({"M13": 95, "C7": "客户满意度调查平均分，目标4分"}, None, False),
    "total-and-meta": ({"M13": 95}, "meta", False),
    "total-another-key": ({"M13": 95}, "key", False),
}


@pytest.mark.parametrize("fast", [True, False], ids=["fastread", "openpyxl"])
@pytest.mark.parametrize("case", list(OVER_CASES))
def test_overwritten_formulas_found_without_rebuilding_the_sheet(
    forms: Forms, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str, fast: bool
) -> None:
    from kpi_excel import collect as co

    edits, also, quick = OVER_CASES[case]
    f = fill(forms.blank["E001"], tmp_path / "x" / "a.xlsx", G, edits=edits)
    data = f.read_bytes()
    if also == "meta":
        data = rezip(data, xml_edit(META_PART, "<t>E001</t>", "<t>E009</t>", 1))
    secret = b"another key" if also == "key" else None
    rebuilt: list[object] = []
    real = co._expected_plan

    def counted(*args: object) -> object:
        rebuilt.append(args)
        return real(*args)  # type: ignore[arg-type]

    d = tmp_path / "in"
    d.mkdir()
    (d / "a.xlsx").write_bytes(data)
    monkeypatch.setattr(co, "_expected_plan", counted)
    (got,) = collect([d], write=False, fast=fast, secret=secret).files
    assert bool(rebuilt) is not quick
    # the reference: the sheet rebuilt every time (nothing put back)
    monkeypatch.setattr(co, "_restored", lambda cells, formulas: list(cells))
    rebuilt.clear()
    (want,) = collect([d], write=False, fast=fast, secret=secret).files
    assert rebuilt
    assert got.as_dict() == want.as_dict()
    assert got.status == "rejected" and "formula_overwritten" in {i.kind for i in got.errors}
    if not quick and also is None:
        assert "locked_changed" in {i.kind for i in got.errors}


#: edits a manager might make: formulas typed over, edited or emptied, locked text
#: and numbers changed or emptied
EDITS: list[tuple[str, object]] = [
    ("M13", 95),
    ("M13", None),
    ("K6", 120),
    ("K6", None),
    ("M6", "=K6*0.65"),
    ("O9", "=100"),
    ("P12", 8),
    ("M14", "A"),
    ("E6", 0.7),
    ("E7", 0.1),
    ("I6", 80),
    ("C7", "客户满意度调查平均分"),
    ("A13", None),
    ("H12", "是否适用"),
]


@pytest.mark.parametrize("seed", range(12))
def test_overwritten_formulas_with_other_edits_give_what_the_rebuilt_sheet_gives(
    forms: Forms, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    import random

    from kpi_excel import collect as co

    rng = random.Random(seed)
    edits: dict[str, object] = dict(rng.sample(EDITS, rng.randint(1, 4)))
    d = tmp_path / "in"
    fill(forms.blank["E002"], d / "a.xlsx", G, edits=edits)
    (got,) = collect([d], write=False).files
    monkeypatch.setattr(co, "_restored", lambda cells, formulas: list(cells))
    (want,) = collect([d], write=False).files
    assert got.as_dict() == want.as_dict(), edits
    assert got.status == "rejected"


# ------------------------------------------------------------------- sheets


def test_renamed_form_sheet_is_read_through_its_names(forms: Forms, tmp_path: Path) -> None:
    data = rezip(forms.good, xml_edit("xl/workbook.xml", FORM_SHEET, "考核表（张三）"))
    res = one(tmp_path, "a.xlsx", data)
    assert res.status == "warning" and [i.kind for i in res.issues] == ["sheet_renamed"]
    assert "考核表（张三）" in res.reason
    assert res.total == Decimal("121.95")


def test_deleted_form_sheet(forms: Forms, tmp_path: Path) -> None:
    gone = {
        **xml_edit("xl/workbook.xml", f"'{FORM_SHEET}'!", "#REF!"),
    }
    data = rezip(forms.good, gone)
    data = rezip(
        data,
        xml_edit(
            "xl/workbook.xml",
            f'<sheet name="{FORM_SHEET}" sheetId="1" state="visible" r:id="rId1" />',
            "",
        ),
    )
    res = one(tmp_path, "a.xlsx", data)
    assert res.status == "rejected" and first_error(res)[0] == "sheet_missing"


def test_unhidden_meta_is_a_warning(forms: Forms, tmp_path: Path) -> None:
    data = rezip(forms.good, xml_edit("xl/workbook.xml", 'state="veryHidden"', 'state="visible"'))
    res = one(tmp_path, "a.xlsx", data)
    assert res.status == "warning" and [i.kind for i in res.issues] == ["meta_visible"]
    assert "取消隐藏" in res.reason


def test_meta_saved_hidden_as_libreoffice_does_is_silent(forms: Forms, tmp_path: Path) -> None:
    data = rezip(forms.good, xml_edit("xl/workbook.xml", 'state="veryHidden"', 'state="hidden"'))
    res = one(tmp_path, "a.xlsx", data)
    assert res.status == "accepted" and res.issues == []


def test_removed_meta(forms: Forms, tmp_path: Path) -> None:
    data = rezip(
        forms.good,
        xml_edit(
            "xl/workbook.xml",
            '<sheet name="_meta" sheetId="2" state="veryHidden" r:id="rId2" />',
            "",
        ),
    )
    res = one(tmp_path, "a.xlsx", data)
    assert res.status == "rejected" and first_error(res)[0] == "not_a_form"


def test_an_added_sheet_is_noted(forms: Forms, tmp_path: Path) -> None:
    res = one(tmp_path, "a.xlsx", add_sheet(forms.good, "说明"))
    assert res.status == "accepted" and [i.kind for i in res.issues] == ["extra_sheet"]
    assert "说明" in res.issues[0].message


# ------------------------------------------------------------ whose form is it


def test_meta_of_another_employee(forms: Forms, tmp_path: Path) -> None:
    """E002's file carrying E001's _meta: the header says 王五, the meta says 张三."""
    theirs = members(forms.goods["E001"])[META_PART]
    data = rezip(forms.goods["E002"], {META_PART: theirs})
    res = one(tmp_path, "a.xlsx", data)
    assert res.status == "rejected"
    kind, message = first_error(res)
    assert kind == "meta_swapped"
    assert "张三" in message and "王五" in message and "调换" in message
    assert res.employee_id == "E001"  # identified as the meta says, and rejected
    # the fingerprint names the header cell that belongs to someone else
    assert any(i.kind == "locked_changed" and "王五" in i.message for i in res.errors)


def test_meta_edited(forms: Forms, tmp_path: Path) -> None:
    data = rezip(forms.good, xml_edit(META_PART, "<t>E001</t>", "<t>E009</t>", 1))
    res = one(tmp_path, "a.xlsx", data)
    assert res.status == "rejected"
    kind, message = first_error(res)
    assert kind == "fingerprint" and "_meta" in message


def test_wrong_period(forms: Forms, tmp_path: Path) -> None:
    d = tmp_path / "in"
    fill(forms.blank["E001"], d / "11月.xlsx", G)
    fill(forms.blank["E002@2026-10"], d / "10月.xlsx", G)
    coll = collect([d], out=tmp_path / "s.xlsx", period="2026-11")
    f = {Path(x.path).name: x for x in coll.files}
    assert f["11月.xlsx"].status == "accepted"
    assert f["10月.xlsx"].status == "rejected" and first_error(f["10月.xlsx"])[0] == "wrong_period"
    assert "2026-10" in f["10月.xlsx"].reason and "2026-11" in f["10月.xlsx"].reason


def test_duplicate_returns(forms: Forms, tmp_path: Path) -> None:
    d = tmp_path / "in"
    fill(forms.blank["E001"], d / "a" / "第一次.xlsx", {**G, "in_sales_rate_actual": 100}, mtime=T0)
    fill(forms.blank["E001"], d / "b" / "第二次.xlsx", G, mtime=T0 + 60)
    (d / "c").mkdir()
    shutil.copy2(d / "b" / "第二次.xlsx", d / "c" / "副本.xlsx")
    coll = collect([d], out=tmp_path / "s.xlsx")
    f = {Path(x.path).name: x for x in coll.files}
    counted = [x for x in coll.files if x.counted]
    assert len(counted) == 1 and counted[0].total == Decimal("121.95")
    losers = [x for x in coll.files if not x.counted]
    assert all(first_error(x)[0] == "duplicate" for x in losers)
    assert "第一次" not in counted[0].path
    assert "另一份" in f["第一次.xlsx"].reason


# ----------------------------------------------------------- template versions


def test_an_older_template_version_is_scored_under_its_own_version(
    forms: Forms, tmp_path: Path
) -> None:
    """Version 0.9 weighed sales 60% and satisfaction 10% (1.0: 65% and 5%).

    Under 0.9: 133 x 60% = 79.80, 110 x 10% = 11.00, the other four 30.00 -> 120.80.
    Under the current 1.0: 86.45 + 5.50 + 30.00 = 121.95. The form's own version counts.
    """
    from kpi_excel.spec.load import find_template

    text = find_template(TEMPLATE).read_text(encoding="utf-8")
    old = text.replace('version: "1.0"', 'version: "0.9"', 1)
    old = old.replace("        weight: 65%", "        weight: 60%", 1)
    old = old.replace(
        "target_text: 4.6分\n        weight: 5%", "target_text: 4.6分\n        weight: 10%", 1
    )
    assert old.count("weight: 60%") == 1 and old.count("weight: 10%") == 1
    path = tmp_path / "old.yaml"
    path.write_text(old, encoding="utf-8")
    made = generate_command(str(path), forms.roster, "2026-11", tmp_path / "gen")
    form = next(p for p in made if p.stem.endswith("E001"))
    f = fill(form, tmp_path / "x" / "old.xlsx", G)
    res = one(tmp_path, "old.xlsx", f.read_bytes())
    assert res.status == "warning" and [i.kind for i in res.issues] == ["template_old"]
    assert res.total == Decimal("120.80")
    assert res.current_version == "1.0" and res.current_total == Decimal("121.95")
    message = res.issues[0].message
    assert "按表内 0.9 版：总分 120.8" in message and "按当前 1.0 版：总分 121.95" in message
    assert "相差 1.15" in message


# -- the fingerprint, hashed from lines kept in UTF-8 ----------------------------------


@pytest.mark.parametrize("case", range(6))
def test_fingerprint_from_encoded_lines_is_the_fingerprint_of_the_text(case: int) -> None:
    """``fingerprint(..., cell_bytes=)`` hashes the same bytes as the text it stands for:
    every way of giving the cells, HMAC of :func:`fingerprint_text` the reference."""
    import hashlib
    import hmac as hmac_mod

    from kpi_excel.meta import cell_line, fingerprint, fingerprint_text

    cells = [
        [],
        [("A1", "考核表"), ("B2", Decimal("87.10")), ("C3", "=ROUND(x,2)"), ("D4", True)],
        [("A1", "tab\there"), ("A2", "line\nbreak\\slash"), ("A3", "   "), ("A4", 0.5)],
        [("E5", "长" * 600), ("F6", 12), ("G7", "x\r\ny")],
        [("A1", "")],  # an empty value has no line
        [("Z9", "é\u00a0€𝄞")],
    ][case]
    meta: dict[str, object] = {
        "fingerprint": "ignored",
        "name": "高超",
        "template_yaml": "id: x\nname: 客服\t经理\n" * 100,  # long: its line is kept
        "empty": None,
        "number": 3,
        "键\t有\\tab": "值\n",
        ("k" * 600): "long key",
    }
    key = b"secret"
    lines = [ln for ln in (cell_line(c, v) for c, v in cells) if ln]
    want = hmac_mod.new(
        key, fingerprint_text("1.0", cells, meta).encode("utf-8"), hashlib.sha256
    ).hexdigest()
    assert fingerprint(key, "1.0", cells, meta) == want
    assert fingerprint(key, "1.0", [], meta, cell_lines=lines) == want
    for _ in range(2):  # each meta line kept the second time
        got = fingerprint(
            key, "1.0", [], meta, cell_lines=lines, cell_bytes=[ln.encode() for ln in lines]
        )
        assert got == want
    meta["name"] = "高超超"
    got = fingerprint(key, "1.0", [], meta, cell_bytes=[ln.encode() for ln in lines])
    assert got != want
    assert (
        got
        == hmac_mod.new(
            key, fingerprint_text("1.0", cells, meta).encode("utf-8"), hashlib.sha256
        ).hexdigest()
    )
