"""Load a form template from YAML, reporting every problem with its path and line."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from kpi_excel.errors import Problem, SpecError
from kpi_excel.spec.model import Form

__all__ = ["load_form", "load_form_text", "builtin_dir", "builtin_forms", "find_template"]

class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """YAML 1.2 booleans: only true/false. PyYAML's YAML 1.1 reads yes/no/on/off as
    booleans, so a rule's ``yes: 5`` would silently become ``True: 5``."""


_Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:bool"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)

_HINTS = {
    "missing": "缺少必填项，请补上",
    "extra_forbidden": "不认识的字段（拼写错误？），请删除或改正",
    "literal_error": "取值不在允许范围内",
    "union_tag_invalid": "rule.kind 未知：可用 linear, tiers, deduction, nonoverlap, level, rating, binary, reverse, manual, custom",
    "union_tag_not_found": "rule 缺少 kind（规则类型）",
}


def builtin_dir() -> Path:
    """The folder of built-in templates (``workbook_templates/`` beside the package)."""
    here = Path(__file__).resolve().parent.parent
    for cand in (here.parent / "workbook_templates", here / "workbook_templates"):
        if cand.is_dir():
            return cand
    return here.parent / "workbook_templates"


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """Walk the composed YAML node tree along a pydantic error location."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = None
            for k, v in node.value:
                if k.value == str(part):
                    nxt = v
                    line = k.start_mark.line + 1
                    break
            if nxt is None:
                continue  # a union tag (the rule kind) in the location: not a YAML key
            node = nxt
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                break
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            continue  # a union tag such as 'linear' inside the location: skip it
    return line


def _path(loc: tuple[Any, ...], data: Any) -> str:
    out = ""
    cur = data
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            cur = cur[part] if isinstance(cur, list) and part < len(cur) else None
        elif isinstance(cur, dict) and cur.get("kind") == part and part not in cur:
            continue  # the discriminator tag pydantic adds for a rule kind
        elif isinstance(cur, dict) and part in cur:
            out += f".{part}" if out else str(part)
            cur = cur[part]
        elif isinstance(cur, dict) or cur is None:
            out += f".{part}" if out else str(part)
            cur = None
        # else: a discriminator tag pydantic adds to the location; not in the YAML
    return out or "(根)"


def load_form_text(text: str, source: str = "<template>") -> Form:
    """Parse and validate a template; raise :class:`SpecError` with located problems."""
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        raise SpecError(
            f"{where}: 模板不是有效的 YAML：{getattr(e, 'problem', e)}；请检查缩进、冒号和引号"
        ) from None
    if not isinstance(data, dict):
        raise SpecError(f"{source}: 模板应是一个 YAML 映射（id: …, title: …）")
    try:
        return Form.model_validate(data)
    except ValidationError as e:
        # the node tree, for the problems' line numbers: composed only when there are
        # problems (it is half the cost of loading a template)
        node = yaml.compose(text, Loader=_Loader)
        problems = []
        for err in e.errors():
            loc = tuple(err["loc"])
            line = _line_of(node, loc)
            where = f"{source}:{line} {_path(loc, data)}" if line else f"{source} {_path(loc, data)}"
            msg = err["msg"].removeprefix("Value error, ")
            hint = _HINTS.get(err["type"])
            if hint and hint not in msg:
                msg = f"{msg}（{hint}）"
            problems.append(Problem(where, msg))
        raise SpecError(f"{source}: 模板有 {len(problems)} 处错误", problems) from None


def load_form(path: str | Path) -> Form:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise SpecError(f"{p}: 无法读取模板文件：{e.strerror}") from None
    except UnicodeDecodeError:
        raise SpecError(f"{p}: 模板文件不是 UTF-8 编码，请另存为 UTF-8") from None
    return load_form_text(text, str(p))


def builtin_forms() -> dict[str, Path]:
    """Built-in template id -> path, in file-name order."""
    out: dict[str, Path] = {}
    for p in sorted(builtin_dir().glob("*.yaml")):
        data = yaml.load(p.read_text(encoding="utf-8"), Loader=_Loader)  # noqa: S506
        if isinstance(data, dict) and "id" in data:
            out[str(data["id"])] = p
    return out


def find_template(ref: str) -> Path:
    """A template by built-in id or by file path."""
    p = Path(ref)
    if p.suffix in {".yaml", ".yml"} and p.exists():
        return p
    forms = builtin_forms()
    if ref in forms:
        return forms[ref]
    known = ", ".join(forms) or "（无）"
    raise SpecError(f"找不到模板 {ref!r}：请给出 YAML 文件路径，或内置模板 id 之一：{known}")
