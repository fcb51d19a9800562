"""What people really type into input cells, and what becomes of it.

Each row: the raw cell value as a reader returns it, the cell's spec, and the
expected outcome: the value scored with (None when rejected), and the kinds of the
findings with their severities. Nothing may be scored silently: any value that the
sheet itself would not score (text) and that is accepted carries a warning.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kpi_excel import validate as _v
from kpi_excel.spec import model as m
from kpi_excel.spec.load import builtin_forms, load_form
from kpi_excel.validate import check_input, chinese_number, parse_number_text, to_sheet_value

D = Decimal

SALES = m.InputSpec(label="实际销售额(万元)", min=0, max=100000, unit="万元")
SCORE = m.InputSpec(label="满意度平均分", min=0, max=5)
COUNT = m.InputSpec(label="超48小时未解决次数", kind="count", min=0, max=100, unit="次")
RATE = m.InputSpec(label="解决率", kind="percent", min=0, max=1)
HR = m.InputSpec(label="HR复核", min=0, max=200, required=False)
LEADER = m.InputSpec(label="领导评分", min=0, max=20)  # decides the score: required
MONTHS = m.InputSpec(label="实际平均服务月数", min=0, max=600, unit="个月")
LEVEL = m.InputSpec(
    label="主动性",
    kind="level",
    choices={"1级": "等候指示", "2级": "询问有何工作可给分配", "3级": "提出建议，然后再作有关行动"},
)
RATING = m.InputSpec(label="评价", kind="rating", choices={"优秀": "", "良好": "", "一般": ""})
NA = m.InputSpec(label="不适用", kind="choice", choices={"是": "", "否": ""}, required=False)
DATE = m.InputSpec(label="填表日期", kind="date", required=False)
OPTIONAL = m.InputSpec(label="备注数", required=False)

# fmt: off
CASES = [
    # -- numbers as numbers: nothing to say ---------------------------------------------
    ("plain number", SALES, "input", 110.0, D("110"), []),
    ("integer", COUNT, "input", 3, D(3), []),
    ("decimal", SCORE, "input", 4.8, D("4.8"), []),
    # -- text the sheet would not score, intent clear: normalised with a warning -------
    ("number stored as text", SALES, "input", "90", D(90), [("text_normalised", "warning")]),
    ("full-width digits", SALES, "input", "９０", D(90), [("text_normalised", "warning")]),
    ("stray spaces", SALES, "input", " 90 ", D(90), [("text_normalised", "warning")]),
    ("ideographic space", SALES, "input", "\u300090", D(90), [("text_normalised", "warning")]),
    ("thousands separator", SALES, "input", "1,234.5", D("1234.5"), [("text_normalised", "warning")]),
    ("unit of the cell", SALES, "input", "90万元", D(90), [("text_normalised", "warning")]),
    ("unit abbreviation", SALES, "input", "90万", D(90), [("text_normalised", "warning")]),
    ("count with 次", COUNT, "input", "3次", D(3), [("text_normalised", "warning")]),
    ("count with 个", COUNT, "input", "3个", D(3), [("text_normalised", "warning")]),
    ("count written 无", COUNT, "input", "无", D(0), [("text_normalised", "warning")]),
    ("months with 月", MONTHS, "input", "14个月", D(14), [("text_normalised", "warning")]),
    ("score with 分", HR, "rater", "95分", D(95), [("text_normalised", "warning")]),
    ("chinese numeral", SALES, "input", "八十", D(80), [("text_normalised", "warning")]),
    ("chinese decimal", SCORE, "input", "四点八", D("4.8"), [("text_normalised", "warning")]),
    ("full-width percent", RATE, "input", "９８％", D("0.98"), [("text_normalised", "warning")]),
    ("percent as text", RATE, "input", "98%", D("0.98"), [("text_normalised", "warning")]),
    ("百分之", RATE, "input", "百分之九十", D("0.9"), [("text_normalised", "warning")]),
    # -- 90 typed for 90%: a unit mix-up, taken as 90% and flagged ------------------------
    ("90 typed for 90%", RATE, "input", 90.0, D("0.9"), [("unit_mixup", "warning")]),
    (
        "'90' typed for 90%",
        RATE,
        "input",
        "90",
        D("0.9"),
        [("text_normalised", "warning"), ("unit_mixup", "warning")],
    ),
    ("a real fraction", RATE, "input", 0.9, D("0.9"), []),
    # -- rejected: the intent is not clear, or the value is impossible -------------------
    ("word in a number cell", SALES, "input", "优秀", None, [("text_in_number", "error")]),
    ("approximate", SALES, "input", "约90", None, [("text_in_number", "error")]),
    ("approximate suffix", SALES, "input", "90左右", None, [("text_in_number", "error")]),
    ("contradicting unit", SALES, "input", "120元", None, [("unit_mismatch", "error")]),
    ("percent in a plain cell", SALES, "input", "85%", None, [("unit_mismatch", "error")]),
    ("score unit in a count", COUNT, "input", "3分", None, [("unit_mismatch", "error")]),
    ("date where a number belongs", SCORE, "input", dt.datetime(2026, 9, 5), None, [("date_in_number", "error")]),
    ("TRUE in a number cell", SALES, "input", True, None, [("wrong_type", "error")]),
    ("negative", SALES, "input", -1.0, D("-1.0"), [("out_of_range", "error")]),
    ("above the maximum", SCORE, "input", 48.0, D("48.0"), [("out_of_range", "error")]),
    ("count not whole", COUNT, "input", 2.5, D("2.5"), [("not_integer", "error")]),
    ("9000% (150 typed)", RATE, "input", 150.0, D("150.0"), [("out_of_range", "error")]),
    ("required blank", SALES, "input", None, None, [("required", "error")]),
    ("required only spaces", SALES, "input", "   ", None, [("blank_spaces", "warning"), ("required", "error")]),
    ("rater blank is fine", HR, "rater", None, None, []),
    ("deciding rater blank", LEADER, "rater", None, None, [("required", "error")]),
    ("optional blank is fine", OPTIONAL, "input", None, None, []),
    ("rater above its range", HR, "rater", 250.0, D("250.0"), [("out_of_range", "error")]),
    # -- choices ------------------------------------------------------------------------
    ("level key", LEVEL, "input", "3级", "3级", []),
    ("level number", LEVEL, "input", 3.0, "3级", [("text_normalised", "warning")]),
    ("level as text digit", LEVEL, "input", "3", "3级", [("text_normalised", "warning")]),
    ("level in chinese", LEVEL, "input", "三级", "3级", [("text_normalised", "warning")]),
    ("level with spaces", LEVEL, "input", " 3 级 ", "3级", [("text_normalised", "warning")]),
    ("level descriptor", LEVEL, "input", "询问有何工作可给分配", "2级", [("text_normalised", "warning")]),
    ("level out of list", LEVEL, "input", "6级", None, [("wrong_choice", "error")]),
    ("rating key", RATING, "input", "良好", "良好", []),
    ("rating unknown", RATING, "input", "很好", None, [("wrong_choice", "error")]),
    ("na yes", NA, "na", "是", "是", []),
    ("na Y", NA, "na", "Y", "是", [("text_normalised", "warning")]),
    ("na 不适用", NA, "na", "不适用", "是", [("text_normalised", "warning")]),
    ("na nonsense", NA, "na", "也许", None, [("wrong_choice", "error")]),
    # -- dates ----------------------------------------------------------------------------
    ("date", DATE, "header", dt.datetime(2026, 12, 3), D(46359), []),
    ("date as text", DATE, "header", "2026年12月3日", D(46359), [("text_normalised", "warning")]),
    ("date as serial", DATE, "header", 46359.0, D("46359.0"), [("date_as_number", "warning")]),
    ("not a date", DATE, "header", "下周", None, [("wrong_type", "error")]),
]
# fmt: on


@pytest.mark.parametrize(
    ("spec", "role", "raw", "value", "findings"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_typed_values(
    spec: m.InputSpec, role: str, raw: object, value: object, findings: list
) -> None:
    got = check_input(raw, spec, role=role)
    assert [(f.kind, f.severity) for f in got.findings] == findings
    assert got.value == value
    if value is not None and not isinstance(value, str):
        assert isinstance(got.value, Decimal)
    # never scored silently: a changed value always comes with a finding
    if got.changed:
        assert got.findings


def test_messages_name_the_cell_and_what_was_read() -> None:
    got = check_input("90分", SALES)  # 分 is not the unit of a sales cell
    assert not got.ok
    assert "实际销售额(万元)" in got.findings[0].message
    assert "90分" in got.findings[0].message
    got = check_input(200000.0, SALES)
    assert "疑似按“元”填写" in got.findings[0].message
    got = check_input(90.0, RATE)
    assert "90%" in got.findings[0].message and "请核实" in got.findings[0].message


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("八十", 80),
        ("八十五", 85),
        ("九十五点五", Decimal("95.5")),
        ("一百二十", 120),
        ("一百零五", 105),
        ("十二", 12),
        ("两百", 200),
        ("一〇〇", 100),
        ("三万二千", 32000),
        ("壹佰", 100),
        ("百", None),
        ("十百", None),
        ("", None),
    ],
)
def test_chinese_numerals(text: str, value: object) -> None:
    assert chinese_number(text) == (None if value is None else Decimal(value))


def test_parse_number_text_keeps_the_suffix() -> None:
    p = parse_number_text("３次")
    assert p is not None and p.value == 3 and p.suffix == "次" and not p.percent
    p = parse_number_text("98.5%")
    assert p is not None and p.value == Decimal("98.5") and p.percent
    assert parse_number_text("优秀") is None


def test_sheet_values() -> None:
    assert to_sheet_value(None) is None
    assert to_sheet_value("") is None
    assert to_sheet_value(0.1) == Decimal("0.1")
    assert to_sheet_value(dt.date(1900, 1, 1)) == Decimal(2)  # Excel's 1900 serials
    assert to_sheet_value(True) is True
    assert to_sheet_value("八十") == "八十"


# -- results kept by value ------------------------------------------------------------


def _specs() -> list[m.InputSpec]:
    from kpi_excel.score import compile_form

    out = []
    for ref in sorted(builtin_forms())[:4]:
        out += [i.spec for i in compile_form(load_form(builtin_forms()[ref])).inputs]
    # a date and a text spec as the signature cells use
    out += [m.InputSpec(kind="date", label="签字日期"), m.InputSpec(kind="text", label="签字")]
    return out


SPECS = _specs()

raw_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1, 1.0, True, "1", "是", "否", "", " ", "1e2", "八十", "约1"]),
    st.text(max_size=12),
    st.text(min_size=250, max_size=300),
    st.dates(dt.date(1950, 1, 1), dt.date(2100, 1, 1)),
    st.datetimes(dt.datetime(1950, 1, 1), dt.datetime(2100, 1, 1)),
)


def _shape(c: object) -> tuple[object, ...]:
    """A result as compared: value with its type (1 == 1.0 == True), raw's type, findings."""
    value = c.value  # type: ignore[attr-defined]
    text = repr(value)
    return (type(value), text, type(c.raw), c.findings)  # type: ignore[attr-defined]


@settings(max_examples=600, deadline=None)
@given(
    raws=st.lists(raw_values, min_size=1, max_size=6),
    spec_at=st.integers(0, len(SPECS) - 1),
    role=st.sampled_from(["input", "rater", "na", "header", "signature"]),
    label=st.sampled_from(["", "完成率", "签字日期"]),
)
def test_kept_results_are_the_results(
    raws: list[object], spec_at: int, role: str, label: str
) -> None:
    """``check_input`` gives a value checked before its result again (numbers, short
    texts, dates): always exactly what checking it now gives, whatever was checked
    before, values equal across types (1, 1.0, True, "1", -0.0) included."""
    spec = SPECS[spec_at]
    for raw in raws + raws[::-1]:
        want = _v._check_input(raw, spec, role, label)
        got = check_input(raw, spec, role=role, label=label)
        assert _shape(got) == _shape(want), raw
        assert got.raw == want.raw or (got.raw != got.raw and want.raw != want.raw)
