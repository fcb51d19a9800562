"""Templates: loading, located errors, lint, and the built-ins."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import ROOT, builtin_template_paths

from kpi_excel.errors import SpecError
from kpi_excel.score import compile_form
from kpi_excel.spec.lint import lint_form
from kpi_excel.spec.load import load_form, load_form_text

EXAMPLE = (ROOT / "workbook_templates" / "cs_manager_monthly_kpi.yaml").read_text(encoding="utf-8")


def errors_of(text: str) -> list[str]:
    with pytest.raises(SpecError) as e:
        load_form_text(text, "t.yaml")
    return [str(p) for p in e.value.problems] or [str(e.value)]


def test_missing_on_zero_is_located_with_line_and_advice():
    bad = EXAMPLE.replace("x: {ratio: [actual, target], on_zero: blank}", "x: {ratio: [actual, target]}")
    (msg,) = errors_of(bad)
    line = next(i for i, s in enumerate(bad.splitlines(), 1) if "x: {ratio: [actual, target]}" in s)
    assert msg.startswith(f"t.yaml:{line} sections[0].indicators[0].rule.x:")
    assert "on_zero" in msg


def test_unknown_field_and_unknown_kind_are_both_reported():
    bad = EXAMPLE.replace("target_text: \"100%\"\n        weight: 65%", "target_txt: \"100%\"\n        weight: 65%")
    bad = bad.replace("kind: deduction", "kind: deductoin")
    msgs = errors_of(bad)
    assert any("target_txt" in m and "不认识的字段" in m for m in msgs)
    assert any("rule" in m and "kind" in m for m in msgs)


def test_weight_over_one_asks_for_percent():
    msgs = errors_of(EXAMPLE.replace("weight: 65%", "weight: 65"))
    assert any("25%" in m for m in msgs)


def test_broken_yaml_gives_line():
    msgs = errors_of("id: x\ntitle: [unclosed\n")
    assert "t.yaml:" in msgs[0] and "YAML" in msgs[0]


def test_yes_no_keys_stay_text():
    # YAML 1.1 would read `yes:` as True; templates are read with YAML 1.2 booleans.
    form = load_form(ROOT / "tests" / "data" / "all_rule_kinds.yaml")
    rule = next(i for _, i in form.indicators() if i.id == "same_period").rule
    assert rule.yes == 5 and rule.no == 0


@pytest.mark.parametrize("path", builtin_template_paths(), ids=lambda p: p.stem)
def test_builtin_passes_lint(path: Path):
    form = load_form(path)
    errors = [f for f in lint_form(form) if f.severity == "error"]
    assert not errors, "\n".join(map(str, errors))
    compile_form(form)


@pytest.mark.parametrize("path", builtin_template_paths(), ids=lambda p: p.stem)
def test_builtin_completions_are_declared(path: Path):
    """Anything completed beyond the seed is marked, and explained in `completions`."""
    form = load_form(path)
    marked = any(i.completion or i.rule.completion for _, i in form.indicators()) or any(
        s.completion for s in form.sections
    )
    if marked:
        assert form.completions, f"{path.name} marks completions but does not explain them"


def test_seed_gap_is_flagged():
    gap = ROOT / "tests" / "data" / "cs_dept_manager_monthly_score_seed_gap.yaml"
    findings = lint_form(load_form(gap))
    assert any(f.severity == "error" and "80 到 85" in f.message for f in findings), findings


def test_weights_must_total_100():
    form = load_form_text(EXAMPLE.replace("weight: 65%", "weight: 60%"), "t.yaml")
    assert any("95%" in f.message for f in lint_form(form))


def test_placeholder_must_name_a_roster_input():
    text = EXAMPLE.replace("计划{{ target }}万元", "计划{{ targt }}万元")
    findings = lint_form(load_form_text(text, "t.yaml"))
    assert any("targt" in f.message for f in findings)
    text = EXAMPLE.replace("计划{{ target }}万元", "计划{{ actual }}万元")
    findings = lint_form(load_form_text(text, "t.yaml"))
    assert any("actual" in f.message and "生成时还不知道" in f.message for f in findings)


def test_unreachable_and_overlapping_tiers():
    text = EXAMPLE.replace(
        "- {gte: 95, lt: 98, score: 90}", "- {gte: 99, score: 95}\n            - {gte: 95, lt: 98, score: 90}"
    ).replace("- {gte: 90, lt: 95, score: 80}", "- {gte: 90, lt: 96, score: 80}")
    msgs = [f.message for f in lint_form(load_form_text(text, "t.yaml"))]
    assert any("永远取不到" in m for m in msgs), msgs
    assert any("重叠" in m for m in msgs), msgs
