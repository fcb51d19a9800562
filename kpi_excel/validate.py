"""Checking and normalising what people really type into a form's input cells.

Managers type ``９０`` (full-width), ``90分``, ``85%``, ``3次``, ``八十``, `` 90 `` or a
number the sheet stores as text; Excel turns ``9-5`` into a date; a percent cell
gets ``90`` where ``90%`` was meant. Each case is decided here, once:

* **accepted with a warning** when the intent is unambiguous: the value is normalised
  (``90分`` -> 90) and the warning says what was read and what it was taken as;
* **rejected** (an ``error`` finding) when it is not: out of range, a date or 是/否 in a
  number cell, words such as ``优秀`` in a number cell, a unit that contradicts the
  cell's unit (``120元`` where 万元 is asked), a required cell left blank.

Nothing is ever scored silently: the sheet itself gives no score for text (every rule
is guarded), so any normalisation changes the number and must be reported.

This module does no I/O; :mod:`kpi_excel.collect` adds the file and cell to each
message.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
import unicodedata
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from kpi_excel.rules.tree import Value
from kpi_excel.spec import model as m

__all__ = [
    "Finding",
    "Checked",
    "check_input",
    "parse_number_text",
    "chinese_number",
    "to_sheet_value",
    "EXCEL_EPOCH",
]

EXCEL_EPOCH = _dt.datetime(1899, 12, 30)

ERROR, WARNING, INFO = "error", "warning", "info"

# Suffixes accepted after a number, by the cell's kind or unit (a count of 次 may be
# written 3次 / 3个 / 3件 …; any score may be written 90分).
_COUNT_UNITS = {
    "次",
    "个",
    "件",
    "人",
    "项",
    "起",
    "条",
    "张",
    "桌",
    "单",
    "位",
    "名",
    "家",
    "笔",
    "户",
    "份",
    "例",
}
_SCORE_UNITS = {"分"}
_UNIT_ALIASES = {
    "万元": {"万元", "万"},
    "元": {"元", "块", "块钱"},
    "个月": {"个月", "月"},
    "月": {"个月", "月"},
    "天": {"天", "日"},
    "小时": {"小时", "h", "H"},
    "%": {"%"},
}
_NONE_WORDS = {"无", "没有", "零", "暂无", "0次"}
_YES = {"是", "y", "yes", "√", "✓", "不适用", "对"}
_NO = {"否", "n", "no", "×", "✗", "适用", "不"}

_CN_DIGITS = {
    "零": 0, "〇": 0, "○": 0, "一": 1, "壹": 1, "幺": 1, "二": 2, "贰": 2, "两": 2, "三": 3,
    "叁": 3, "四": 4, "肆": 4, "五": 5, "伍": 5, "六": 6, "陆": 6, "七": 7, "柒": 7,
    "八": 8, "捌": 8, "九": 9, "玖": 9,
}  # fmt: skip
_CN_UNITS = {"十": 10, "拾": 10, "百": 100, "佰": 100, "千": 1000, "仟": 1000}
_CN_CHARS = "".join(_CN_DIGITS) + "".join(_CN_UNITS) + "万萬点點"
_CN_RE = re.compile(rf"^(百分之)?([{_CN_CHARS}]+)(.*)$")
_NUM_RE = re.compile(r"^([+-]?)(\d+(?:\.\d*)?|\.\d+)(.*)$")
_THOUSANDS_RE = re.compile(r"^[+-]?\d{1,3}(,\d{3})+(\.\d+)?")
_SPACE_RE = re.compile(r"[\s\u00a0\u200b\u200c\u200d\u2060\ufeff]+")
_VAGUE = ("约", "大约", "左右", "以上", "以下", "以内", "多", "余", "~", "～", "至", "或")
#: a date or time typed as text where a number belongs: 2026-09-05, 9/5, 9月5日, 9:30
_DATE_TEXT = re.compile(
    r"^(\d{4}[-/年]\d{1,2}月?([-/]?\d{1,2}日?)?|\d{4}\.\d{1,2}\.\d{1,2}|\d{1,2}[-/]\d{1,2}"
    r"|\d{1,2}月\d{1,2}日?|\d{1,2}:\d{2}(:\d{2})?)$"
)
#: longest piece of typed text quoted in a message
_QUOTE = 40


def _q(text: str) -> str:
    """Typed text as quoted in a message: at most :data:`_QUOTE` characters."""
    return text if len(text) <= _QUOTE else text[: _QUOTE - 1] + "…"


@dataclass(frozen=True)
class Finding:
    """One observation about one input value (no location: the caller adds it)."""

    kind: str
    severity: str  # error | warning | info
    message: str


@dataclass(frozen=True)
class Checked:
    """The value to score with, and what was found on the way."""

    value: Value
    raw: object
    findings: tuple[Finding, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return not any(f.severity == ERROR for f in self.findings)

    @property
    def changed(self) -> bool:
        return to_sheet_value(self.raw) != self.value


def _rejected(raw: object, kind: str, message: str) -> Checked:
    """Not usable: no value, one error finding."""
    return Checked(None, raw, (Finding(kind, ERROR, message),))


def _fmt(d: Decimal) -> str:
    s = format(d.normalize(), "f")
    return s


def _show(raw: object) -> str:
    if isinstance(raw, float):
        return _fmt(Decimal(repr(raw)))
    if isinstance(raw, _dt.datetime):
        return (
            raw.strftime("%Y-%m-%d %H:%M") if (raw.hour or raw.minute) else raw.strftime("%Y-%m-%d")
        )
    if isinstance(raw, _dt.date):
        return raw.strftime("%Y-%m-%d")
    if isinstance(raw, bool):
        return "TRUE" if raw else "FALSE"
    return str(raw)


def to_sheet_value(raw: object) -> Value:
    """A cell value as the sheet's formulas see it (dates are serial numbers)."""
    if raw is None or raw == "":
        return None
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int):
        return Decimal(raw)
    if isinstance(raw, float):
        return Decimal(repr(raw))
    if isinstance(raw, Decimal):
        return raw
    if isinstance(raw, _dt.datetime):
        delta = raw - EXCEL_EPOCH
        return Decimal(delta.days) + Decimal(delta.seconds) / Decimal(86400)
    if isinstance(raw, _dt.date):
        return Decimal((raw - EXCEL_EPOCH.date()).days)
    if isinstance(raw, _dt.time):
        secs = raw.hour * 3600 + raw.minute * 60 + raw.second
        return Decimal(secs) / Decimal(86400)
    if isinstance(raw, _dt.timedelta):
        return Decimal(raw.total_seconds()) / Decimal(86400)
    return str(raw)


def chinese_number(text: str) -> Decimal | None:
    """八十 -> 80, 九十五点五 -> 95.5, 一百二十 -> 120, 一〇〇 -> 100; None if not one."""
    if not text:
        return None
    text = text.replace("萬", "万").replace("點", "点")
    if text.count("点") > 1:
        return None
    whole, _, frac = text.partition("点")
    if frac and not all(c in _CN_DIGITS for c in frac):
        return None
    if not whole:
        return None
    if all(c in _CN_DIGITS for c in whole):
        if len(whole) > 1 and whole[0] in "零〇○" and not frac:
            return None
        value = int("".join(str(_CN_DIGITS[c]) for c in whole))
    else:
        total = section = digit = 0
        last_unit = 10**9
        for c in whole:
            if c in _CN_DIGITS:
                digit = _CN_DIGITS[c]
            elif c in _CN_UNITS:
                unit = _CN_UNITS[c]
                if unit >= last_unit:
                    return None  # 十百, 百百: not a number
                if digit == 0 and unit != 10:
                    return None  # 百 alone is not a number; 十二 (implied 一十) is
                section += (digit or 1) * unit
                digit = 0
                last_unit = unit
            elif c == "万":
                if total:
                    return None
                total = (section + digit) * 10000
                if total == 0:
                    return None
                section = digit = 0
                last_unit = 10**9
            else:  # pragma: no cover - the regex admits only the characters above
                return None
        value = total + section + digit
    if frac:
        return Decimal(f"{value}.{''.join(str(_CN_DIGITS[c]) for c in frac)}")
    return Decimal(value)


@dataclass(frozen=True)
class _Parsed:
    value: Decimal
    percent: bool
    suffix: str
    notes: tuple[str, ...]


def parse_number_text(text: str) -> _Parsed | None:
    """Read a number someone typed as text; None when it is not one.

    Handles full-width characters, stray and inner spaces, thousands separators,
    ``%``/``百分之``, Chinese numerals and a trailing unit (returned in ``suffix``).
    """
    notes: list[str] = []
    s = unicodedata.normalize("NFKC", text).replace("\u2212", "-")  # U+2212 MINUS SIGN
    if s != text:
        notes.append("全角字符已转为半角")
    t = _SPACE_RE.sub("", s)
    if t != s.strip():
        notes.append("去掉了数字中的空格")
    s = t
    if not s:
        return None
    if _THOUSANDS_RE.match(s):
        s = s.replace(",", "", s.count(","))
        notes.append("去掉了千位分隔符")
    mt = _NUM_RE.match(s)
    if mt:
        sign, digits, suffix = mt.groups()
        try:
            value = Decimal(sign + digits.rstrip("."))
        except InvalidOperation:  # pragma: no cover - the regex admits only digits
            return None
        percent = False
        if suffix.startswith("%"):
            percent, suffix = True, suffix[1:]
        return _Parsed(value, percent, suffix, tuple(notes))
    mc = _CN_RE.match(s)
    if mc:
        pct, cn, suffix = mc.groups()
        value = chinese_number(cn)
        if value is None:
            return None
        notes.append("中文数字已转为阿拉伯数字")
        percent = bool(pct)
        if suffix.startswith("%"):
            percent, suffix = True, suffix[1:]
        return _Parsed(value, percent, suffix, tuple(notes))
    return None


def _unit_ok(suffix: str, spec: m.InputSpec, role: str) -> bool:
    if not suffix:
        return True
    unit = spec.unit.strip()
    allowed: set[str] = set()
    if unit:
        allowed |= {unit} | _UNIT_ALIASES.get(unit, set())
    if spec.kind == "count":
        allowed |= _COUNT_UNITS
    if role == "rater" or unit == "分":
        allowed |= _SCORE_UNITS
    return suffix in allowed


def _describe(spec: m.InputSpec) -> str:
    kind = {"count": "次数（整数）", "percent": "百分比", "number": "数字"}.get(spec.kind, "数字")
    unit = f"，单位：{spec.unit}" if spec.unit and spec.kind != "percent" else ""
    return f"{kind}{unit}"


def _percent_bounds(spec: m.InputSpec) -> tuple[Decimal | None, Decimal | None]:
    """Bounds of a percent cell as fractions, read as the roster and generator read them."""
    from kpi_excel.roster import percent_bound

    lo = None if spec.min is None else percent_bound(spec.min)
    hi = None if spec.max is None else percent_bound(spec.max)
    return lo, hi


def _range(
    value: Decimal, lo: Decimal | None, hi: Decimal | None, show: str, pct: bool = False
) -> Finding | None:
    def f(d: Decimal) -> str:
        return _fmt(d * 100) + "%" if pct else _fmt(d)

    if lo is not None and value < lo:
        return Finding("out_of_range", ERROR, f"{show} 小于允许的最小值 {f(lo)}")
    if hi is not None and value > hi:
        return Finding("out_of_range", ERROR, f"{show} 大于允许的最大值 {f(hi)}")
    return None


def _check_number(raw: object, spec: m.InputSpec, role: str, label: str) -> Checked:
    what = f"“{label}”" if label else "此格"
    shown = _show(raw)
    if isinstance(raw, bool):
        return _rejected(raw, "wrong_type", f"{what}应填{_describe(spec)}，却是逻辑值 {shown}")
    if isinstance(raw, _dt.date | _dt.time | _dt.timedelta):
        return _rejected(
            raw,
            "date_in_number",
            f"{what}应填{_describe(spec)}，但 Excel 把输入识别成了日期/时间 {shown}"
            f"（可能输入了 9-5 或 9/5 这样的写法）；请改为数字",
        )
    if isinstance(raw, float) and not math.isfinite(raw):
        return _rejected(raw, "wrong_type", f"{what}应填{_describe(spec)}，却是无效的数值 {shown}")
    if isinstance(raw, str) and _DATE_TEXT.match(
        _SPACE_RE.sub("", unicodedata.normalize("NFKC", raw))
    ):
        return _rejected(
            raw,
            "date_in_number",
            f"{what}应填{_describe(spec)}，却填了“{_q(raw)}”（像是日期、时间或范围）；"
            "请填写一个数字",
        )
    findings: list[Finding] = []
    percent_typed = False
    text_note: tuple[str, str] | None = None
    if isinstance(raw, int | float | Decimal):
        value = to_sheet_value(raw)
        assert isinstance(value, Decimal)
    else:
        text = str(raw)
        parsed = parse_number_text(text)
        if parsed is None:
            vague = any(v in text for v in _VAGUE)
            if (
                spec.kind == "count"
                and _SPACE_RE.sub("", unicodedata.normalize("NFKC", text)) in _NONE_WORDS
            ):
                return Checked(
                    Decimal(0),
                    raw,
                    (Finding("text_normalised", WARNING, f"{what}填写为“{_q(text)}”，已按 0 计"),),
                )
            hint = "；请填写确切的数字" if vague else ""
            return _rejected(
                raw, "text_in_number", f"{what}应填{_describe(spec)}，却填了文字“{_q(text)}”{hint}"
            )
        if parsed.suffix and any(v in parsed.suffix for v in _VAGUE):
            return _rejected(
                raw, "text_in_number", f"{what}填写为“{_q(text)}”，不是确切的数字；请填写确切的数字"
            )
        if not _unit_ok(parsed.suffix, spec, role):
            want = f"单位应为 {spec.unit}" if spec.unit else "此格不带单位"
            return _rejected(
                raw,
                "unit_mismatch",
                f"{what}填写为“{_q(text)}”，单位“{_q(parsed.suffix)}”与要求不符（{want}）；请只填数字",
            )
        value = parsed.value
        percent_typed = parsed.percent
        if spec.kind == "percent":
            if percent_typed:
                value = value / 100
        elif percent_typed and spec.unit.strip() not in {"%", "％"}:
            return _rejected(
                raw,
                "unit_mismatch",
                f"{what}应填{_describe(spec)}，却填了百分数“{_q(text)}”；请按要求填写",
            )
        how = "、".join(parsed.notes)
        detail = f"（{how}）" if how else ""
        if parsed.suffix or percent_typed:
            gone = ("%" if percent_typed else "") + parsed.suffix
            detail = f"（去掉了单位“{gone}”{'，' + how if how else ''}）"
        text_note = (_q(text), detail)

    show_value = _fmt(value * 100) + "%" if spec.kind == "percent" else _fmt(value)
    if spec.kind == "percent":
        lo, hi = _percent_bounds(spec)
        if not percent_typed and 1 < value <= 100 and (hi is None or value > hi):
            fixed = value / 100
            if (lo is None or fixed >= lo) and (hi is None or fixed <= hi):
                findings.append(
                    Finding(
                        "unit_mixup",
                        WARNING,
                        f"{what}填写为 {_fmt(value)}（即 {_fmt(value * 100)}%），疑似把 "
                        f"{_fmt(value)}% 写成了 {_fmt(value)}；已按 {_fmt(value)}% 计，请核实",
                    )
                )
                value = fixed
                show_value = _fmt(value * 100) + "%"
        bad = _range(value, lo, hi, f"{what}的值 {show_value}", pct=True)
        if bad is not None:
            findings.append(bad)
    else:
        if spec.kind == "count" and value != value.to_integral_value():
            findings.append(
                Finding("not_integer", ERROR, f"{what}是次数，应为整数，却填了 {show_value}")
            )
        lo = spec.min
        hi = spec.max
        if role == "rater" and lo is None:
            lo = Decimal(0)
        bad = _range(value, lo, hi, f"{what}的值 {show_value}")
        if bad is not None:
            hint = ""
            if (
                hi is not None
                and value > hi
                and spec.unit.strip() == "万元"
                and value / 10000 <= hi
            ):
                hint = "（疑似按“元”填写，此格单位为万元）"
            elif hi is not None and value > hi and value / 100 <= hi and value <= 100 and hi <= 1:
                hint = "（疑似把百分数写成了整数）"
            findings.append(Finding(bad.kind, bad.severity, bad.message + hint))
    if text_note is not None:
        typed, detail = text_note
        findings.insert(
            0,
            Finding(
                "text_normalised",
                WARNING,
                f"{what}是文本“{typed}”，不是数字，表内公式不会计分；已按 {show_value} 计{detail}",
            ),
        )
    return Checked(value, raw, tuple(findings))


def _plain(text: str) -> str:
    return _SPACE_RE.sub("", unicodedata.normalize("NFKC", text))


def _check_choice(raw: object, spec: m.InputSpec, role: str, label: str) -> Checked:
    what = f"“{label}”" if label else "此格"
    keys = list(spec.choices)
    listed = "、".join(keys)
    if isinstance(raw, bool | _dt.date | _dt.time | _dt.timedelta):
        return _rejected(
            raw, "wrong_choice", f"{what}应从下拉列表选择（{listed}），却是 {_show(raw)}"
        )
    text = _show(raw)
    if text in keys:
        return Checked(text, raw)
    folded = {k.casefold(): k for k in keys}
    if text.casefold() in folded:  # the sheet compares text case-insensitively too
        return Checked(text, raw)
    plain = _plain(text)
    cands = {_plain(k).casefold(): k for k in keys}
    key = cands.get(plain.casefold())
    if key is None and role == "na":
        low = plain.casefold()
        if low in _YES:
            key = "是"
        elif low in _NO:
            key = "否"
        if key not in keys:
            key = None
    if key is None:
        # a level typed as its number (3 for 3级), or the descriptor instead of the key
        for k, desc in spec.choices.items():
            kp = _plain(k)
            if re.fullmatch(r"\d+", plain) and kp.rstrip("级等档星") == plain:
                key = k
                break
            if desc and _plain(desc).casefold() == plain.casefold():
                key = k
                break
    if key is None and re.fullmatch(r"[一二三四五六七八九十]+级?", plain):
        n = chinese_number(plain.rstrip("级"))
        if n is not None:
            for k in keys:
                if _plain(k).rstrip("级等档星") == str(n):
                    key = k
                    break
    if key is None:
        return _rejected(
            raw,
            "wrong_choice",
            f"{what}填写为“{_q(text)}”，不是可选项之一（{listed}）；请从下拉列表选择",
        )
    return Checked(
        key,
        raw,
        (
            Finding(
                "text_normalised",
                WARNING,
                f"{what}填写为“{_q(text)}”，表内公式无法识别；已按“{key}”计",
            ),
        ),
    )


_DATE_FORMATS = ("%Y-%m-%d", "%Y/%m/%d", "%Y.%m.%d", "%Y年%m月%d日", "%Y%m%d")


def _check_date(raw: object, spec: m.InputSpec, label: str) -> Checked:
    what = f"“{label}”" if label else "此格"
    if isinstance(raw, _dt.datetime | _dt.date):
        return Checked(to_sheet_value(raw), raw)
    if isinstance(raw, int | float | Decimal) and not isinstance(raw, bool):
        d = Decimal(repr(raw)) if isinstance(raw, float) else Decimal(raw)
        if 20000 <= d <= 80000:
            day = (EXCEL_EPOCH + _dt.timedelta(days=int(d))).date()
            return Checked(
                d,
                raw,
                (
                    Finding(
                        "date_as_number",
                        WARNING,
                        f"{what}是数字 {_fmt(d)}，已按日期 {day:%Y-%m-%d} 理解",
                    ),
                ),
            )
        return _rejected(raw, "wrong_type", f"{what}应填日期，却填了数字 {_show(raw)}")
    text = _plain(str(raw))
    for fmt in _DATE_FORMATS:
        try:
            day = _dt.datetime.strptime(text, fmt)
        except ValueError:
            continue
        return Checked(
            to_sheet_value(day),
            raw,
            (
                Finding(
                    "text_normalised",
                    WARNING,
                    f"{what}的日期是文本“{_q(str(raw))}”，已按 {day:%Y-%m-%d} 理解",
                ),
            ),
        )
    return _rejected(raw, "wrong_type", f"{what}应填日期（如 2026-11-30），却填了“{_q(str(raw))}”")


def check_input(raw: object, spec: m.InputSpec, *, role: str = "input", label: str = "") -> Checked:
    """Check one input cell's raw value (as read from the file) against its spec.

    ``raw`` is what a reader returns: None/"" (blank), float/int, str, bool, or a
    date/datetime/time. ``role`` is the cell's role in the compiled form (``input``,
    ``rater``, ``na``, ``header``). The returned value is what to score with.

    A value checked against a spec before gives the same (immutable) result again:
    the same answers (100, 4.5, 3, "是", a signing date) recur form after form. Numbers,
    short texts, dates and times are kept this way; the check depends on nothing else.
    """
    kind = type(raw)
    if kind is float or kind is int:
        key: tuple[object, ...] = (kind, repr(raw), id(spec), role, label)  # -0.0 is not 0.0
    elif (kind is str and len(raw) <= 256) or kind is _dt.date or kind is _dt.datetime:  # type: ignore[arg-type]
        key = (kind, raw, id(spec), role, label)
    else:
        return _check_input(raw, spec, role, label)
    got = _CHECKED.get(key)
    if got is not None and got[0] is spec:
        return got[1]
    checked = _check_input(raw, spec, role, label)
    if len(_CHECKED) >= 16384:
        _CHECKED.clear()
    _CHECKED[key] = (spec, checked)  # the spec is kept: its id stays its own
    return checked


#: (type, the value (a number's repr), id of the spec, role, label) -> (spec, result)
_CHECKED: dict[tuple[object, ...], tuple[m.InputSpec, Checked]] = {}


def _check_input(raw: object, spec: m.InputSpec, role: str, label: str) -> Checked:
    label = label or spec.label
    what = f"“{label}”" if label else "此格"
    if raw is None or (isinstance(raw, str) and not _plain(raw)):
        findings: tuple[Finding, ...] = ()
        if isinstance(raw, str) and raw:
            findings += (Finding("blank_spaces", WARNING, f"{what}只有空格，按未填写处理"),)
        if spec.required and not spec.blank_as_zero and role != "na":
            findings += (Finding("required", ERROR, f"{what}是必填项，未填写"),)
        return Checked(None, raw, findings)
    if role == "na" or spec.kind in {"level", "rating", "choice"}:
        return _check_choice(raw, spec, role, label)
    if spec.kind == "text":
        return Checked(_show(raw) if not isinstance(raw, str) else raw, raw)
    if spec.kind == "date":
        return _check_date(raw, spec, label)
    return _check_number(raw, spec, role, label)
