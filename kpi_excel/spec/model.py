"""The form template model: one appraisal form (考核表) as validated data.

No I/O here: :mod:`kpi_excel.spec.load` reads YAML into these classes and turns
validation errors into located, actionable messages.

Units, so every template reads the same way:

* weights are fractions; YAML may write ``25%`` or ``0.25``;
* a rule's ``x`` built from a ratio is in percent points (``ROUND(a/b,6)*100``), so a
  tier ``gte: 98`` (or ``98%``) means "at least 98%";
* scores are in the rule's own scale up to ``full`` (100 by default; a level item
  scored 5..25 has ``full: 25``); the weighted score is ``score/full*100*weight``.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "Form",
    "Section",
    "Indicator",
    "InputSpec",
    "XSpec",
    "Tier",
    "Rule",
    "Raters",
    "GradeBand",
    "Pay",
    "Column",
    "HeaderField",
    "Note",
    "ROSTER_FIELDS",
    "PERIOD_KINDS",
]

ID = re.compile(r"^[a-z][a-z0-9_]{0,39}$")

PERIOD_KINDS = {"monthly": "月度", "quarterly": "季度", "yearly": "年度"}

# Roster fields a header cell may show (key: Chinese column name in the roster).
ROSTER_FIELDS: dict[str, str] = {
    "employee_id": "工号",
    "name": "姓名",
    "department": "部门",
    "position": "岗位",
    "reviewer": "考核人",
    "reviewer_position": "考核人岗位",
    "hire_date": "入职日期",
    "store": "店面",
    "region": "区域",
    "manager": "负责人",
    "q": "绩效工资基数Q",
}


def _decimal(v: Any) -> Any:
    if v is None or isinstance(v, Decimal):
        return v
    if isinstance(v, bool):
        raise ValueError("应为数字，不是 是/否")
    if isinstance(v, int | float):
        return Decimal(str(v))
    if isinstance(v, str):
        s = v.strip().replace("％", "%")
        try:
            if s.endswith("%"):
                return Decimal(s[:-1])
            return Decimal(s)
        except InvalidOperation:
            raise ValueError(f"{v!r} 不是数字") from None
    raise ValueError(f"{v!r} 不是数字")


def _fraction(v: Any) -> Any:
    """A weight: ``25%`` or ``0.25`` both mean one quarter."""
    if isinstance(v, str) and v.strip().replace("％", "%").endswith("%"):
        return _decimal(v) / 100
    d = _decimal(v)
    if d is not None and d > 1:
        raise ValueError(f"{v!r} 大于 1：权重请写成 25% 或 0.25")
    return d


Num = Annotated[Decimal, BeforeValidator(_decimal)]
Fraction = Annotated[Decimal, BeforeValidator(_fraction)]


class _Base(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Column(_Base):
    """One column of the form's table, as on paper (序号, KPI指标, 权重 …)."""

    key: str
    label: str
    width: float | None = None

    @field_validator("key")
    @classmethod
    def _key(cls, v: str) -> str:
        if not ID.match(v):
            raise ValueError(f"列的 key {v!r} 应为小写英文、数字和下划线，以字母开头")
        return v


class HeaderField(_Base):
    """A header cell: a label and where its value comes from."""

    label: str
    source: str = Field(description="a roster field, 'period', 'company', or 'input'")

    @field_validator("source")
    @classmethod
    def _source(cls, v: str) -> str:
        allowed = set(ROSTER_FIELDS) | {"period", "company", "input", "blank"}
        if v not in allowed:
            raise ValueError(f"表头来源 {v!r} 未知；可用：{', '.join(sorted(allowed))}")
        return v


class InputSpec(_Base):
    """One cell somebody fills: from the roster at generation, or on the form."""

    label: str
    kind: Literal["number", "count", "percent", "level", "rating", "choice", "text", "date"] = (
        "number"
    )
    source: Literal["form", "roster"] = "form"
    column: str | None = None
    min: Num | None = None
    max: Num | None = None
    unit: str = ""
    default: Num | str | None = None
    choices: dict[str, str] = Field(default_factory=dict)
    required: bool = True
    blank_as_zero: bool = False
    help: str = ""
    completion: bool = False

    @model_validator(mode="after")
    def _check(self) -> InputSpec:
        if self.kind in {"level", "rating", "choice"} and not self.choices:
            raise ValueError(f"{self.kind} 类输入需要 choices（选项及说明）")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min 大于 max")
        return self


class XSpec(_Base):
    """The measured quantity of a rule: a ratio (in %), a difference, or a value."""

    ratio: tuple[str, str] | None = None
    diff: tuple[str, str] | None = None
    value: str | None = None
    on_zero: Num | Literal["blank"] | None = None

    @model_validator(mode="after")
    def _one(self) -> XSpec:
        given = [k for k in ("ratio", "diff", "value") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("x 须且只须给出 ratio、diff、value 之一")
        if self.ratio is not None and self.on_zero is None:
            raise ValueError(
                "比率规则必须写明分母为 0 时的结果：on_zero: 100（给满分等固定分）或 on_zero: blank（留空并标记）"
            )
        return self


class Tier(_Base):
    """One band of a tier table; bounds in the rule's x units."""

    gte: Num | None = None
    gt: Num | None = None
    lte: Num | None = None
    lt: Num | None = None
    score: Num
    completion: bool = False
    note: str = ""

    @model_validator(mode="after")
    def _bounds(self) -> Tier:
        if self.gte is not None and self.gt is not None:
            raise ValueError("gte 与 gt 只能给一个")
        if self.lte is not None and self.lt is not None:
            raise ValueError("lte 与 lt 只能给一个")
        return self

    @property
    def low(self) -> tuple[Decimal | None, bool]:
        """Lower bound and whether it is inclusive."""
        if self.gte is not None:
            return self.gte, True
        return self.gt, False

    @property
    def high(self) -> tuple[Decimal | None, bool]:
        if self.lte is not None:
            return self.lte, True
        return self.lt, False


class DeductionItem(_Base):
    count: str
    per: Num
    label: str = ""


class _Rule(_Base):
    completion: bool = False  # the rule's numbers are a completion of the seed


class LinearRule(_Rule):
    kind: Literal["linear"]
    x: XSpec
    base: Num = Decimal(100)
    pivot: Num = Decimal(100)
    slope: Num
    min: Num | None = Decimal(0)
    max: Num | None = None


class TiersRule(_Rule):
    kind: Literal["tiers"]
    x: XSpec
    tiers: list[Tier]
    domain: tuple[Num, Num | None] = (Decimal(0), None)


class DeductionRule(_Rule):
    kind: Literal["deduction"]
    base: Num | None = None
    items: list[DeductionItem]
    floor: Num = Decimal(0)


class NonOverlapRule(_Rule):
    kind: Literal["nonoverlap"]
    base: Num | None = None
    planned: str
    done: str
    passed: str
    per_missed: Num
    per_failed: Num
    floor: Num = Decimal(0)


class LevelRule(_Rule):
    kind: Literal["level"]
    input: str
    points: dict[str, Num]


class RatingRule(_Rule):
    kind: Literal["rating"]
    input: str
    points: dict[str, Num]


class BinaryRule(_Rule):
    kind: Literal["binary"]
    when: str
    yes: Num
    no: Num = Decimal(0)


class ReverseRule(_Rule):
    kind: Literal["reverse"]
    x: XSpec
    limit: str | Num
    full: Num | None = None
    slope: Num
    min: Num = Decimal(0)


class ManualRule(_Rule):
    kind: Literal["manual"]


class CustomRule(_Rule):
    kind: Literal["custom"]
    expr: str
    guard: list[str] | None = None
    min: Num | None = None
    max: Num | None = None


Rule = Annotated[
    LinearRule
    | TiersRule
    | DeductionRule
    | NonOverlapRule
    | LevelRule
    | RatingRule
    | BinaryRule
    | ReverseRule
    | ManualRule
    | CustomRule,
    Field(discriminator="kind"),
]


class Raters(_Base):
    """How several rater columns become one final score.

    * ``override``: the first column in ``order`` holding a number wins (``system`` is
      the rule's computed score): HR复核 overrides 考核人评分 when filled.
    * ``blend``: a weighted mean of all columns in ``weights`` (all required).
    * ``decide``: the column named by ``decide`` is the score (领导评分 decides).
    """

    columns: dict[str, InputSpec] = Field(default_factory=dict)
    mode: Literal["override", "blend", "decide"] = "override"
    order: list[str] = Field(default_factory=list)
    weights: dict[str, Fraction] = Field(default_factory=dict)
    decide: str | None = None
    system_column: str | None = None

    @model_validator(mode="after")
    def _check(self) -> Raters:
        names = set(self.columns) | {"system"}
        if self.mode == "override":
            if not self.order:
                raise ValueError("override 方式需要 order（优先顺序，如 [hr, system]）")
            bad = [c for c in self.order if c not in names]
        elif self.mode == "blend":
            if not self.weights:
                raise ValueError("blend 方式需要 weights（如 self: 30%, leader: 70%）")
            bad = [c for c in self.weights if c not in names]
            total = sum(self.weights.values(), Decimal(0))
            if total != 1:
                raise ValueError(f"blend 权重合计为 {total * 100}%，应为 100%")
        else:
            if not self.decide:
                raise ValueError("decide 方式需要 decide（决定分数的列，如 leader）")
            bad = [] if self.decide in names else [self.decide]
        if bad:
            raise ValueError(f"评分列 {', '.join(bad)} 未在 columns 中定义")
        return self


class Indicator(_Base):
    """One row of the form: a KPI, its target, rule and rater columns."""

    id: str
    name: str
    method: str = ""
    target_text: str = ""
    unit: str = ""
    data_source: str = ""
    period_text: str = ""
    weight: Fraction | None = None
    points: Num | None = None
    full: Num | None = None
    inputs: dict[str, InputSpec] = Field(default_factory=dict)
    rule: Rule
    raters: Raters | None = None
    may_be_na: bool = False
    completion: bool = False
    note: str = ""

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not ID.match(v):
            raise ValueError(f"指标 id {v!r} 应为小写英文、数字和下划线（≤40 字符），以字母开头")
        return v

    @property
    def full_score(self) -> Decimal:
        """Full marks of this item's score scale."""
        if self.full is not None:
            return self.full
        if self.points is not None:
            return self.points
        return Decimal(100)


class Section(_Base):
    id: str
    name: str
    weight: Fraction | None = None
    points: Num | None = None
    subtotal_label: str = "加权合计"
    show_subtotal: bool = True
    completion: bool = False
    indicators: list[Indicator]

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not ID.match(v):
            raise ValueError(f"分区 id {v!r} 应为小写英文、数字和下划线，以字母开头")
        return v


class GradeBand(_Base):
    min: Num
    grade: str
    label: str = ""
    coefficient: Num | None = None


class Pay(_Base):
    label: str = "绩效工资"
    formula_text: str = "绩效工资 = Q × 绩效系数"
    note: str = ""


class Note(_Base):
    title: str
    text: str


class Form(_Base):
    """A whole appraisal form template."""

    id: str
    title: str
    version: str
    period: Literal["monthly", "quarterly", "yearly"]
    orientation: Literal["portrait", "landscape"] = "portrait"
    company: str = ""
    subtitle: str = ""
    header: list[HeaderField]
    columns: list[Column]
    composition: Literal["weighted", "sections", "points"]
    full_score: Num = Decimal(100)
    na_policy: Literal["largest", "proportional"] = "largest"
    sections: list[Section]
    total_label: str = "总分"
    total_text: str = ""
    grades: list[GradeBand] = Field(default_factory=list)
    pay: Pay | None = None
    signatures: list[str] = Field(default_factory=lambda: ["被考核人", "考核人", "复核人"])
    notes: list[Note] = Field(default_factory=list)
    completions: list[str] = Field(default_factory=list)
    seed_source: str = ""

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not ID.match(v):
            raise ValueError(f"模板 id {v!r} 应为小写英文、数字和下划线，以字母开头")
        return v

    @model_validator(mode="after")
    def _check(self) -> Form:
        seen: set[str] = set()
        for s in self.sections:
            for ind in s.indicators:
                if ind.id in seen:
                    raise ValueError(f"指标 id {ind.id!r} 重复")
                seen.add(ind.id)
        sec_ids = [s.id for s in self.sections]
        if len(set(sec_ids)) != len(sec_ids):
            raise ValueError("分区 id 重复")
        keys = [c.key for c in self.columns]
        if len(set(keys)) != len(keys):
            raise ValueError("表格列 key 重复")
        bands = [g.min for g in self.grades]
        if bands != sorted(bands, reverse=True):
            raise ValueError("grades 须按 min 从高到低排列")
        return self

    @property
    def period_label(self) -> str:
        return PERIOD_KINDS[self.period]

    def indicators(self) -> list[tuple[Section, Indicator]]:
        return [(s, i) for s in self.sections for i in s.indicators]
