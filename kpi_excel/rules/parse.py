"""A small, safe expression language for custom rules.

Numbers (``3.3``, ``98%``), input names, ``+ - * /`` (also ``× ÷``), comparisons
(``= == <> != < <= > >= ≥ ≤``), parentheses, ``"text"`` and the functions IF, AND,
OR, MIN, MAX, ROUND, ABS, ISNUMBER, ISBLANK. Parsed by recursive descent into the
same tree the built-in rule kinds use; nothing is ever passed to ``eval``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from decimal import Decimal

from kpi_excel.errors import RuleError
from kpi_excel.rules.tree import BinOp, Cmp, Func, Neg, Node, Num, Ref, Text

__all__ = ["parse_expression", "CUSTOM_FUNCTIONS"]

CUSTOM_FUNCTIONS = frozenset(
    {"IF", "AND", "OR", "MIN", "MAX", "ROUND", "ABS", "ISNUMBER", "ISBLANK"}
)

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<num>\d+(?:\.\d+)?%?|\.\d+%?)
  | (?P<str>"(?:[^"]|"")*")
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op><>|<=|>=|==|!=|[-+*/×÷=<>≥≤(),])
    """,
    re.VERBOSE,
)

_SYNONYM = {"×": "*", "÷": "/", "==": "=", "!=": "<>", "≥": ">=", "≤": "<="}


def _tokens(text: str) -> list[tuple[str, str, int]]:
    out: list[tuple[str, str, int]] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise RuleError(
                f"表达式第 {pos + 1} 个字符 {text[pos]!r} 无法识别：只能使用数字、输入名、"
                f"+ - * / 、比较符、括号和 IF/AND/OR/MIN/MAX/ROUND/ABS"
            )
        kind = m.lastgroup or ""
        if kind != "ws":
            val = m.group()
            out.append((kind, _SYNONYM.get(val, val), pos))
        pos = m.end()
    out.append(("end", "", len(text)))
    return out


class _Parser:
    def __init__(self, text: str, names: Iterable[str] | None) -> None:
        self.text = text
        self.toks = _tokens(text)
        self.i = 0
        self.names = None if names is None else set(names)

    def peek(self) -> tuple[str, str, int]:
        return self.toks[self.i]

    def take(self, value: str | None = None) -> tuple[str, str, int]:
        tok = self.toks[self.i]
        if value is not None and tok[1] != value:
            got = tok[1] or "表达式结尾"
            raise RuleError(f"表达式第 {tok[2] + 1} 个字符处应为 {value!r}，实际为 {got!r}")
        self.i += 1
        return tok

    def parse(self) -> Node:
        node = self.comparison()
        kind, val, pos = self.peek()
        if kind != "end":
            raise RuleError(f"表达式第 {pos + 1} 个字符处多出 {val!r}")
        return node

    def comparison(self) -> Node:
        node = self.additive()
        while self.peek()[1] in {"=", "<>", "<", "<=", ">", ">="}:
            op = self.take()[1]
            node = Cmp(op, node, self.additive())
        return node

    def additive(self) -> Node:
        node = self.term()
        while self.peek()[1] in {"+", "-"}:
            op = self.take()[1]
            node = BinOp(op, node, self.term())
        return node

    def term(self) -> Node:
        node = self.unary()
        while self.peek()[1] in {"*", "/"}:
            op = self.take()[1]
            node = BinOp(op, node, self.unary())
        return node

    def unary(self) -> Node:
        if self.peek()[1] == "-":
            self.take()
            return Neg(self.unary())
        if self.peek()[1] == "+":
            self.take()
            return self.unary()
        return self.primary()

    def primary(self) -> Node:
        kind, val, pos = self.take()
        if kind == "num":
            if val.endswith("%"):
                return Num(Decimal(val[:-1]) / 100)
            return Num(Decimal(val))
        if kind == "str":
            return Text(val[1:-1].replace('""', '"'))
        if val == "(":
            node = self.comparison()
            self.take(")")
            return node
        if kind == "name":
            if self.peek()[1] == "(":
                fname = val.upper()
                if fname not in CUSTOM_FUNCTIONS:
                    raise RuleError(
                        f"表达式中的函数 {val} 不可用：只能使用 {', '.join(sorted(CUSTOM_FUNCTIONS))}"
                    )
                self.take("(")
                args: list[Node] = []
                if self.peek()[1] != ")":
                    args.append(self.comparison())
                    while self.peek()[1] == ",":
                        self.take()
                        args.append(self.comparison())
                self.take(")")
                try:
                    return Func(fname, tuple(args))
                except ValueError as e:
                    raise RuleError(f"{fname} 的参数个数不对：{e}") from None
            if self.names is not None and val not in self.names:
                known = "、".join(sorted(self.names)) or "（无）"
                raise RuleError(f"表达式引用了未定义的输入 {val!r}；可用的输入：{known}")
            return Ref(val)
        raise RuleError(f"表达式第 {pos + 1} 个字符处不应出现 {val or '结尾'!r}")


def parse_expression(text: str, names: Iterable[str] | None = None) -> Node:
    """Parse a custom rule expression; ``names`` limits which input names it may use."""
    if not isinstance(text, str) or not text.strip():
        raise RuleError("表达式为空")
    return _Parser(text, names).parse()
