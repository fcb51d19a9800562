"""Each rule kind against the seed's own cases, hand-computed.

The table is the spec: the seed wording, the inputs, and the answer a person gets
with pencil and paper.
"""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from kpi_excel.errors import RuleError
from kpi_excel.rules.kinds import build_rule
from kpi_excel.rules.parse import parse_expression
from kpi_excel.rules.tree import SheetError
from kpi_excel.spec import model as m


def indicator(rule: dict, inputs: dict, **kw) -> m.Indicator:
    data = {"id": "k", "name": "指标", "weight": "100%", "inputs": inputs, "rule": rule}
    data.update(kw)
    return m.Indicator.model_validate(data)


def score(ind: m.Indicator, **values):
    tree = build_rule(ind, lambda k: k)
    env = {k: (D(str(v)) if isinstance(v, int | float) and not isinstance(v, bool) else v) for k, v in values.items()}
    return tree.evaluate(env)


AMOUNTS = {"target": {"label": "计划", "source": "roster"}, "actual": {"label": "实际"}}

# 销售收入计划完成率: 每±1% ±3.3分, 加分至200分为止
SALES = indicator(
    {"kind": "linear", "x": {"ratio": ["actual", "target"], "on_zero": "blank"},
     "base": 100, "pivot": 100, "slope": 3.3, "min": 0, "max": 200},
    AMOUNTS,
)


@pytest.mark.parametrize(
    ("actual", "target", "expected"),
    [
        (95, 100, D("83.5")),      # 完成率95% → 100 − 5×3.3
        (140, 100, D("200")),      # 140% → 232, 加分至200分为止
        (100, 100, D("100")),
        (101, 100, D("103.3")),
        (0, 100, D("0")),          # 100 − 330 floored at 0
        (1292.62, 1319, D("93.4")),  # exactly 98%: 100 − 2×3.3
        (1, 3, D("0")),              # 33.3333% → 100 − 66.6667×3.3 < 0
        (2, 3, D("0")),              # 66.6667% → 100 − 33.3333×3.3 = −10.0 → 0
        (97, 99, D("93.33")),        # 97.9798% → 100 − 2.0202×3.3 = 93.33334
    ],
)
def test_linear_capped(actual, target, expected):
    assert score(SALES, actual=actual, target=target) == expected


def test_linear_zero_target_is_the_templates_choice():
    assert score(SALES, actual=10, target=0) == ""


# 部门员工平均服务年限: 目标>12个月, 每±1个月 ±5分
YEARS = indicator(
    {"kind": "linear", "x": {"diff": ["actual", "target"]}, "base": 100, "pivot": 0, "slope": 5, "min": 0,
     "max": 200},
    AMOUNTS,
)


@pytest.mark.parametrize(("actual", "expected"), [(14, D("110")), (12, D("100")), (9, D("85")), (12.5, D("102.5"))])
def test_linear_on_difference(actual, expected):
    assert score(YEARS, actual=actual, target=12) == expected


# 解决率 >=98% 100分; >=95% 90分; >=90% 80分; <90% 0分
RESOLVED = indicator(
    {"kind": "tiers", "x": {"ratio": ["resolved", "total"], "on_zero": 100},
     "tiers": [{"gte": 98, "score": 100}, {"gte": 95, "score": 90}, {"gte": 90, "score": 80},
               {"lt": 90, "score": 0}]},
    {"total": {"label": "投诉总次数", "kind": "count"}, "resolved": {"label": "圆满解决次数", "kind": "count"}},
)


@pytest.mark.parametrize(
    ("resolved", "total", "expected"),
    [
        (97, 100, D("90")),          # 解决率97% → 90
        (98, 100, D("100")),
        (1292.62, 1319, D("100")),   # 0.9799999999999999 as a double: still the ≥98% tier
        (95, 100, D("90")),
        (94.999, 100, D("80")),
        (90, 100, D("80")),
        (89, 100, D("0")),
        (0, 0, D("100")),            # no complaints at all: the template says 100
    ],
)
def test_tiers(resolved, total, expected):
    assert score(RESOLVED, resolved=resolved, total=total) == expected


def test_tiers_gap_gives_no_score():
    seed_gap = indicator(
        {"kind": "tiers", "x": {"ratio": ["a", "b"], "on_zero": "blank"}, "tiers": [
            {"gte": 90, "score": 20}, {"gte": 85, "score": 10}, {"lt": 80, "score": 0}]},
        {"a": {"label": "完成"}, "b": {"label": "计划"}}, full=20,
    )
    assert score(seed_gap, a=82, b=100) == ""   # 80–85% is undefined on the paper form
    assert score(seed_gap, a=86, b=100) == D("10")


# 客户投诉必须48小时内解决, 每不及时一次扣5分
LATE = indicator(
    {"kind": "deduction", "base": 100, "items": [{"count": "late", "per": 5}]},
    {"late": {"label": "不及时次数", "kind": "count"}},
)


@pytest.mark.parametrize(("late", "expected"), [(3, D("85")), (0, D("100")), (20, D("0")), (25, D("0"))])
def test_deduction_floored(late, expected):
    assert score(LATE, late=late) == expected


def test_blank_count_is_not_a_silent_zero():
    assert score(LATE, late=None) == ""
    lenient = indicator(
        {"kind": "deduction", "base": 100, "items": [{"count": "late", "per": 5}]},
        {"late": {"label": "不及时次数", "kind": "count", "blank_as_zero": True}},
    )
    assert score(lenient, late=None) == D("100")


# 个人考勤 8分: 迟到早退扣2分/次, 病假扣1分/次, 事假扣2分/次
ATTENDANCE = indicator(
    {"kind": "deduction", "items": [
        {"count": "late", "per": 2}, {"count": "sick", "per": 1}, {"count": "personal", "per": 2}]},
    {"late": {"label": "迟到早退", "kind": "count"}, "sick": {"label": "病假", "kind": "count"},
     "personal": {"label": "事假", "kind": "count"}},
    weight=None, points=8,
)


@pytest.mark.parametrize(
    ("late", "sick", "personal", "expected"),
    [(0, 0, 0, D("8")), (1, 2, 1, D("2")), (3, 0, 0, D("2")), (2, 2, 2, D("0")), (0, 3, 0, D("5"))],
)
def test_attendance_points(late, sick, personal, expected):
    assert score(ATTENDANCE, late=late, sick=sick, personal=personal) == expected


# 每周制作客户服务报告: 按要求完成20分; 每少做一次扣10分; 未通过1次扣5分 (不与未做重叠扣分)
REPORTS = indicator(
    {"kind": "nonoverlap", "planned": "planned", "done": "done", "passed": "passed",
     "per_missed": 10, "per_failed": 5},
    {"planned": {"label": "应做", "kind": "count", "source": "roster"}, "done": {"label": "已做", "kind": "count"},
     "passed": {"label": "通过", "kind": "count"}},
    full=20,
)


@pytest.mark.parametrize(
    ("planned", "done", "passed", "expected"),
    [
        (4, 4, 4, D("20")),
        (4, 3, 3, D("10")),   # one missed: −10, the missing one is not also "未通过"
        (4, 4, 3, D("15")),   # one failed
        (4, 3, 2, D("5")),    # one missed, one failed
        (4, 1, 0, D("0")),    # floored
    ],
)
def test_deduction_without_overlap(planned, done, passed, expected):
    assert score(REPORTS, planned=planned, done=done, passed=passed) == expected


LEVELS = {f"{i}级": d for i, d in enumerate(["等候指示", "询问有何工作可给分配", "提出建议，然后再作有关行动",
                                             "行动，但例外情况下征求意见", "单独行动，定时汇报结果"], start=1)}
INITIATIVE = indicator(
    {"kind": "level", "input": "level", "points": {"1级": 5, "2级": 10, "3级": 15, "4级": 20, "5级": 25}},
    {"level": {"label": "等级", "kind": "level", "choices": LEVELS}},
    full=25,
)


@pytest.mark.parametrize(("level", "expected"), [("4级", D("20")), ("1级", D("5")), ("5级", D("25")),
                                                 ("六级", ""), (None, "")])
def test_level_points(level, expected):
    assert score(INITIATIVE, level=level) == expected


RATING = indicator(
    {"kind": "rating", "input": "r", "points": {"优秀": 100, "良好": 80, "一般": 60}},
    {"r": {"label": "评价", "kind": "rating", "choices": {"优秀": "…", "良好": "…", "一般": "…"}}},
)


@pytest.mark.parametrize(("r", "expected"), [("优秀", D("100")), ("良好", D("80")), ("一般", D("60")), ("差", "")])
def test_rating_points(r, expected):
    assert score(RATING, r=r) == expected


# 销售收入超过同期5分, 低于同期0分
SAME_PERIOD = indicator(
    {"kind": "binary", "when": "this_year >= last_year", "yes": 5, "no": 0},
    {"this_year": {"label": "本期"}, "last_year": {"label": "去年同期", "source": "roster"}},
    full=5,
)


@pytest.mark.parametrize(("this", "last", "expected"), [(120, 100, D("5")), (100, 100, D("5")), (99, 100, D("0")),
                                                         ("九十", 100, "")])
def test_binary(this, last, expected):
    assert score(SAME_PERIOD, this_year=this, last_year=last) == expected


# 客户投诉次数 控制在__以内 (lower is better)
COMPLAINTS = indicator(
    {"kind": "reverse", "x": {"value": "actual"}, "limit": "target", "slope": 10},
    {"target": {"label": "上限", "source": "roster"}, "actual": {"label": "投诉次数", "kind": "count"}},
)


@pytest.mark.parametrize(("actual", "expected"), [(3, D("100")), (5, D("100")), (7, D("80")), (30, D("0"))])
def test_reverse(actual, expected):
    assert score(COMPLAINTS, actual=actual, target=5) == expected


@pytest.mark.parametrize("bad", ["八十", "90分", " ", True])
def test_text_never_scores(bad):
    # In every engine text compares greater than any number: unguarded, "八十" would
    # pass IF(actual>=target, …) with full marks.
    assert score(SALES, actual=bad, target=100) == ""
    assert score(RESOLVED, resolved=bad, total=100) == ""


def test_custom_rule_rounds_half_away_from_zero():
    ind = indicator({"kind": "custom", "expr": "actual * 5%"}, {"actual": {"label": "实际"}})
    assert score(ind, actual=43.1) == D("2.16")   # 2.155 exactly; banker's rounding says 2.16 too
    ind = indicator({"kind": "custom", "expr": "actual"}, {"actual": {"label": "实际"}})
    assert score(ind, actual=1.005) == D("1.01")  # round(1.005, 2) == 1.0 in Python floats
    assert score(ind, actual=2.675) == D("2.68")
    assert score(ind, actual=-2.675) == D("-2.68")


@pytest.mark.parametrize(
    "text",
    ["__import__('os')", "actual.__class__", "open('x')", "SUMPRODUCT(actual)", "actual ** 2", "actual; 1"],
)
def test_custom_language_rejects_anything_else(text):
    with pytest.raises(RuleError):
        parse_expression(text, ["actual"])


def test_custom_language_parses_seed_style():
    tree = parse_expression("IF(actual ≥ target × 98%, 100, MAX(0, 100 - (target - actual) ÷ 1 × 5))",
                            ["actual", "target"])
    assert tree.evaluate({"actual": D(97), "target": D(100)}) == D(85)
    assert tree.to_excel(lambda n: n) == (
        "IF((actual>=(target*0.98)),100,MAX(0,(100-(((target-actual)/1)*5))))"
    )


def test_unknown_input_is_reported():
    with pytest.raises(RuleError, match="未定义的输入"):
        parse_expression("actual + bonus", ["actual"])


def test_division_by_zero_is_a_sheet_error():
    tree = parse_expression("actual / target", ["actual", "target"])
    with pytest.raises(SheetError):
        tree.evaluate({"actual": D(1), "target": D(0)})
