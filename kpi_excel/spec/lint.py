"""Lint a form template: the defects paper forms really have.

Checks: weights total 100% per level (or points total the form's full score); tier
tables with gaps or overlaps (the seed's "≥90% 20分, ≥85% 10分, <80% 0分" leaves
80–85% undefined); unreachable tiers; deductions that can exceed an item's points;
undefined placeholders or inputs; rules whose inputs are missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from jinja2 import meta as jinja_meta
from jinja2.sandbox import SandboxedEnvironment

from kpi_excel.errors import KpiExcelError
from kpi_excel.rules.parse import parse_expression
from kpi_excel.rules.tree import refs_of
from kpi_excel.spec import model as m

__all__ = ["Finding", "lint_form"]

_HUNDRED = Decimal(1)


@dataclass(frozen=True)
class Finding:
    severity: str  # error | warning
    where: str
    message: str

    def __str__(self) -> str:
        tag = "错误" if self.severity == "error" else "提醒"
        return f"[{tag}] {self.where}: {self.message}"


def _pct(d: Decimal) -> str:
    return f"{(d * 100).normalize():f}%"


def _interval_text(lo: Decimal | None, lo_inc: bool, hi: Decimal | None, hi_inc: bool) -> str:
    left = "(-∞" if lo is None else ("[" if lo_inc else "(") + f"{lo.normalize():f}"
    right = "+∞)" if hi is None else f"{hi.normalize():f}" + ("]" if hi_inc else ")")
    return f"{left}, {right}"


def _tier_findings(where: str, rule: m.TiersRule) -> list[Finding]:
    """Gaps, overlaps and unreachable bands over the rule's domain."""
    out: list[Finding] = []
    d_lo, d_hi = rule.domain
    # Points where coverage can change: every bound, plus points between them.
    bounds = sorted(
        {b for t in rule.tiers for b in (t.low[0], t.high[0]) if b is not None} | {d_lo}
        | ({d_hi} if d_hi is not None else set())
    )

    def covering(x: Decimal) -> list[int]:
        hits = []
        for i, t in enumerate(rule.tiers):
            lo, lo_inc = t.low
            hi, hi_inc = t.high
            if lo is not None and (x < lo or (x == lo and not lo_inc)):
                continue
            if hi is not None and (x > hi or (x == hi and not hi_inc)):
                continue
            hits.append(i)
        return hits

    probes: list[Decimal] = []
    for i, b in enumerate(bounds):
        probes.append(b)
        if i + 1 < len(bounds):
            probes.append((b + bounds[i + 1]) / 2)
    probes.append(bounds[-1] + 1)
    probes = [p for p in probes if p >= d_lo and (d_hi is None or p <= d_hi)]

    # gaps: maximal runs of uncovered probes, reported as intervals
    gap_start: Decimal | None = None
    last_covered: Decimal | None = None
    gaps: list[tuple[Decimal | None, Decimal | None]] = []
    for p in probes:
        if not covering(p):
            if gap_start is None:
                gap_start = p if (p in bounds or last_covered is None) else last_covered
        else:
            if gap_start is not None:
                gaps.append((gap_start, p))
                gap_start = None
            last_covered = p
    if gap_start is not None:
        gaps.append((gap_start, None))
    for lo, hi in gaps:
        lo_t = f"{lo.normalize():f}" if lo is not None else "-∞"
        hi_t = f"{hi.normalize():f}" if hi is not None else "+∞"
        out.append(
            Finding(
                "error",
                where,
                f"分档表在 {lo_t} 到 {hi_t} 之间没有定义得分（纸质表的漏洞）：请补一档并标注 completion: true",
            )
        )
    # overlaps: a probe covered by two bands
    overlapped: set[tuple[int, int]] = set()
    for p in probes:
        hits = covering(p)
        for a in range(len(hits)):
            for b in range(a + 1, len(hits)):
                overlapped.add((hits[a], hits[b]))
    for a, b in sorted(overlapped):
        ta, tb = rule.tiers[a], rule.tiers[b]
        # "≥90% 20分; ≥85% 10分" is a cascade read top-down, as on paper; only two
        # explicitly closed ranges that overlap are an authoring mistake.
        closed = all(t.low[0] is not None and t.high[0] is not None for t in (ta, tb))
        if closed and ta.score != tb.score:
            out.append(
                Finding(
                    "warning",
                    where,
                    f"第 {a + 1} 档 {_interval_text(*ta.low, *ta.high)} 与第 {b + 1} 档 "
                    f"{_interval_text(*tb.low, *tb.high)} 重叠，按先列出者计分；请确认分档边界",
                )
            )
    # unreachable: a band no probe reaches first
    first_hits = {covering(p)[0] for p in probes if covering(p)}
    for i, t in enumerate(rule.tiers):
        if i not in first_hits:
            out.append(
                Finding(
                    "error",
                    where,
                    f"第 {i + 1} 档 {_interval_text(*t.low, *t.high)}（{t.score.normalize():f}分）永远取不到："
                    "前面的档已覆盖它，请调整顺序或边界",
                )
            )
    return out


def _placeholders(text: str) -> set[str]:
    env = SandboxedEnvironment()
    return jinja_meta.find_undeclared_variables(env.parse(text))


def lint_form(form: m.Form) -> list[Finding]:
    """All findings for a template; an empty list means the template is clean."""
    out: list[Finding] = []
    col_keys = {c.key for c in form.columns}

    # --- weights and points ------------------------------------------------------
    inds = form.indicators()
    if form.composition == "weighted":
        total = sum((i.weight or Decimal(0) for _, i in inds), Decimal(0))
        missing = [i.id for _, i in inds if i.weight is None]
        if missing:
            out.append(Finding("error", "sections", f"指标 {', '.join(missing)} 没有权重"))
        if total != _HUNDRED:
            out.append(Finding("error", "sections", f"各指标权重合计为 {_pct(total)}，应为 100%"))
    elif form.composition == "sections":
        st = sum((s.weight or Decimal(0) for s in form.sections), Decimal(0))
        if st != _HUNDRED:
            out.append(Finding("error", "sections", f"各分区权重合计为 {_pct(st)}，应为 100%"))
        for s in form.sections:
            if s.weight is None:
                out.append(Finding("error", f"sections.{s.id}", "分区没有权重"))
            t = sum((i.weight or Decimal(0) for i in s.indicators), Decimal(0))
            if t != _HUNDRED:
                out.append(
                    Finding("error", f"sections.{s.id}", f"分区“{s.name}”内指标权重合计为 {_pct(t)}，应为 100%")
                )
    else:
        pt = Decimal(0)
        for s in form.sections:
            ps = sum((i.points or Decimal(0) for i in s.indicators), Decimal(0))
            missing = [i.id for i in s.indicators if i.points is None]
            if missing:
                out.append(Finding("error", f"sections.{s.id}", f"指标 {', '.join(missing)} 没有分值"))
            if s.points is not None and ps != s.points:
                out.append(
                    Finding(
                        "error",
                        f"sections.{s.id}",
                        f"分区“{s.name}”标明 {s.points.normalize():f} 分，但各项分值合计 {ps.normalize():f} 分",
                    )
                )
            pt += ps
        if pt != form.full_score:
            out.append(
                Finding("error", "sections", f"各项分值合计 {pt.normalize():f} 分，应为满分 {form.full_score.normalize():f} 分")
            )
        for _, i in inds:
            if i.may_be_na:
                out.append(Finding("error", f"indicators.{i.id}", "计分制（points）表不支持“不适用”转移权重"))

    # --- not applicable -------------------------------------------------------------
    if form.composition != "points" and form.na_policy == "largest":
        scopes = [s.indicators for s in form.sections] if form.composition == "sections" else [
            [i for _, i in inds]
        ]
        for scope in scopes:
            if any(i.may_be_na for i in scope) and all(i.may_be_na for i in scope):
                out.append(
                    Finding("error", "na_policy", "“不适用”的权重无处可转：同一范围内至少要有一项不能选不适用")
                )

    # --- per indicator ---------------------------------------------------------------
    for sec, ind in inds:
        where = f"sections.{sec.id}.indicators.{ind.id}"
        names = set(ind.inputs)
        rule = ind.rule
        for key, spec in ind.inputs.items():
            if spec.column is not None and spec.column not in col_keys:
                out.append(Finding("error", f"{where}.inputs.{key}", f"列 {spec.column!r} 不在表格列 columns 中"))
            if spec.source == "roster" and spec.default is None:
                out.append(
                    Finding("warning", f"{where}.inputs.{key}", "目标值没有默认值：花名册/目标文件必须为每人提供")
                )
        if ind.raters is not None:
            for key, spec in ind.raters.columns.items():
                if spec.column is not None and spec.column not in col_keys:
                    out.append(Finding("error", f"{where}.raters.{key}", f"列 {spec.column!r} 不在表格列 columns 中"))
        # placeholders in text must name roster inputs (known at generation)
        roster_inputs = {k for k, v in ind.inputs.items() if v.source == "roster"}
        for field in ("method", "target_text"):
            text = getattr(ind, field)
            try:
                used = _placeholders(text)
            except Exception as e:  # jinja syntax error
                out.append(Finding("error", f"{where}.{field}", f"占位符语法错误：{e}"))
                continue
            for ph in sorted(used - roster_inputs):
                hint = "它是表上填写的输入，生成时还不知道" if ph in names else "没有这个输入"
                out.append(Finding("error", f"{where}.{field}", f"占位符 {{{{ {ph} }}}} 无法填入：{hint}"))
        # inputs a rule refers to must exist
        refs: list[str] = []
        try:
            if isinstance(rule, m.LinearRule | m.TiersRule | m.ReverseRule):
                x = rule.x
                refs += list(x.ratio or x.diff or ()) + ([x.value] if x.value else [])
                if isinstance(rule, m.ReverseRule) and isinstance(rule.limit, str):
                    refs.append(rule.limit)
            elif isinstance(rule, m.DeductionRule):
                for item in rule.items:
                    refs += refs_of(parse_expression(item.count))
            elif isinstance(rule, m.NonOverlapRule):
                refs += [rule.planned, rule.done, rule.passed]
            elif isinstance(rule, m.LevelRule | m.RatingRule):
                refs.append(rule.input)
                spec = ind.inputs.get(rule.input)
                if spec is not None:
                    missing_pts = set(spec.choices) - set(rule.points)
                    if missing_pts:
                        out.append(
                            Finding("error", f"{where}.rule", f"选项 {', '.join(sorted(missing_pts))} 没有对应分数")
                        )
                top = max(rule.points.values(), default=Decimal(0))
                if top > ind.full_score:
                    out.append(
                        Finding("error", f"{where}.rule", f"最高 {top.normalize():f} 分超过该项满分 {ind.full_score.normalize():f}")
                    )
            elif isinstance(rule, m.BinaryRule):
                refs += refs_of(parse_expression(rule.when))
            elif isinstance(rule, m.CustomRule):
                refs += refs_of(parse_expression(rule.expr))
        except KpiExcelError as e:
            out.append(Finding("error", f"{where}.rule", str(e)))
        for r in dict.fromkeys(refs):
            if r not in names:
                out.append(Finding("error", f"{where}.rule", f"规则引用了未定义的输入 {r!r}"))

        if isinstance(rule, m.TiersRule):
            out += _tier_findings(f"{where}.rule.tiers", rule)
            top = max((t.score for t in rule.tiers), default=Decimal(0))
            if top > ind.full_score:
                out.append(
                    Finding("error", f"{where}.rule", f"最高档 {top.normalize():f} 分超过该项满分 {ind.full_score.normalize():f}")
                )
        if isinstance(rule, m.DeductionRule | m.NonOverlapRule):
            base = rule.base if rule.base is not None else ind.full_score
            if base > ind.full_score:
                out.append(Finding("error", f"{where}.rule", "扣分基数超过该项满分"))
            # counts are unbounded unless every input has a max: then say how far it can go
            if isinstance(rule, m.DeductionRule):
                worst = Decimal(0)
                bounded = True
                for item in rule.items:
                    tree = parse_expression(item.count)
                    maxes = [ind.inputs[r].max for r in refs_of(tree) if r in ind.inputs]
                    if any(v is None for v in maxes) or not maxes:
                        bounded = False
                        break
                    worst += item.per * max(v for v in maxes if v is not None)
                if not bounded or worst > base:
                    out.append(
                        Finding(
                            "warning" if rule.floor is not None else "error",
                            f"{where}.rule",
                            f"扣分可能超过该项分值 {base.normalize():f} 分，按下限 {rule.floor.normalize():f} 分封底",
                        )
                    )
        if isinstance(rule, m.ManualRule) and ind.raters is None:
            out.append(Finding("error", f"{where}.rule", "manual（人工评分）指标需要 raters 评分列"))

    # --- grades ---------------------------------------------------------------------------
    if form.grades:
        lowest = form.grades[-1].min
        if lowest > 0:
            out.append(
                Finding("error", "grades", f"最低等级从 {lowest.normalize():f} 分起，低于此分的总分没有等级：最低一档请写 min: 0")
            )
        if form.pay is not None and any(g.coefficient is None for g in form.grades):
            out.append(Finding("error", "grades", "有绩效工资（pay）时每个等级都要有 coefficient（绩效系数）"))
        if form.pay is not None and not any(h.source == "q" for h in form.header):
            out.append(Finding("error", "pay", "绩效工资 = Q × 系数，但表头没有 source: q 的字段"))
    return out
