"""Text of a form rendered with an employee's targets (jinja2, sandboxed, strict).

Templates write a rule's wording once, with placeholders for the numbers that vary by
employee: ``考核期内存量客户资产达到{{ target }}万元以上``. At generation the
placeholders are filled from the employee's targets (roster or template defaults);
inputs filled on the form itself show as a blank line ``____``, as on paper.

The environment is sandboxed (a template is data, not code) and strict: a placeholder
that names no input is an error, so a typo never prints an empty target.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from functools import lru_cache
from typing import Any

import jinja2
from jinja2 import meta
from jinja2.sandbox import SandboxedEnvironment

from kpi_excel.errors import Problem, SpecError
from kpi_excel.rules.tree import decimal_text
from kpi_excel.spec import model as m

__all__ = [
    "BLANK",
    "placeholders",
    "render_text",
    "format_value",
    "indicator_context",
    "check_form_text",
]

#: What a placeholder for a value filled on the form shows (a blank to write on).
BLANK = "____"


@lru_cache(maxsize=1)
def _env() -> SandboxedEnvironment:
    return SandboxedEnvironment(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )


@lru_cache(maxsize=4096)
def _compile(text: str) -> jinja2.Template:
    return _env().from_string(text)


def placeholders(text: str) -> set[str]:
    """Names a text refers to (``{{ target }}`` -> ``{"target"}``)."""
    if "{" not in text:
        return set()
    try:
        ast = _env().parse(text)
    except jinja2.TemplateSyntaxError as e:
        raise SpecError(f"文字模板有语法错误（第 {e.lineno} 行）：{e.message}") from None
    return set(meta.find_undeclared_variables(ast))


def format_value(value: object, spec: m.InputSpec | None = None) -> str:
    """A target as it reads in a sentence: 500, 4.6, 95% (percent inputs hold 0.95)."""
    if value is None or value == "":
        return BLANK
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, int | float):
        value = Decimal(str(value))
    if isinstance(value, Decimal):
        if spec is not None and spec.kind == "percent":
            return decimal_text(value * 100) + "%"
        return decimal_text(value)
    return str(value)


def render_text(text: str, context: Mapping[str, Any], where: str = "") -> str:
    """Render ``text`` with ``context``; raise :class:`SpecError` naming ``where``."""
    if not text or "{" not in text:
        return text or ""
    try:
        return _compile(text).render(**context)
    except jinja2.UndefinedError as e:
        known = "、".join(sorted(context)) or "（无）"
        raise SpecError(
            f"{where}: 文字中的占位符无法填写：{e.message}；可用的名称：{known}",
            [Problem(where, f"{e.message}；请改成上述名称之一")],
        ) from None
    except jinja2.TemplateSyntaxError as e:
        raise SpecError(f"{where}: 文字模板有语法错误：{e.message}") from None
    except jinja2.exceptions.SecurityError as e:
        raise SpecError(f"{where}: 文字模板使用了不允许的写法：{e}") from None


def indicator_context(
    ind: m.Indicator,
    values: Mapping[str, object],
    extra: Mapping[str, object] | None = None,
) -> dict[str, str]:
    """Placeholders of one indicator: each input id -> its formatted value.

    ``values`` maps the indicator's input ids to values (targets from the roster);
    inputs without a value (those filled on the form) show as :data:`BLANK`.
    ``extra`` adds names such as ``period`` or ``name`` (employee fields).
    """
    ctx: dict[str, str] = {k: format_value(v) for k, v in (extra or {}).items()}
    for key, spec in ind.inputs.items():
        ctx[key] = format_value(values.get(key), spec)
    return ctx


#: Names every text may use besides the indicator's inputs.
COMMON_NAMES = frozenset({"period", "company", *m.ROSTER_FIELDS})


def check_form_text(form: m.Form) -> list[Problem]:
    """Every placeholder of every text names an input or a common name (for lint)."""
    problems: list[Problem] = []
    for s_i, sec in enumerate(form.sections):
        for i_i, ind in enumerate(sec.indicators):
            for fld in ("method", "target_text", "name", "note"):
                text = getattr(ind, fld)
                where = f"sections[{s_i}].indicators[{i_i}].{fld}"
                try:
                    names = placeholders(text)
                except SpecError as e:
                    problems.append(Problem(where, str(e)))
                    continue
                unknown = sorted(names - set(ind.inputs) - COMMON_NAMES)
                if unknown:
                    problems.append(
                        Problem(
                            where,
                            f"占位符 {', '.join(unknown)} 不是本指标的输入；可用：{'、'.join(ind.inputs) or '（无）'}",
                        )
                    )
    return problems
