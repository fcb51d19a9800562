"""The hidden ``_meta`` sheet of a generated form and its HMAC fingerprint.

Every generated form carries a very hidden sheet ``_meta``: column A a key, column B
its value (row 1 holds the headers ``key`` / ``value``). A value longer than one cell
can hold (Excel's limit is 32,767 characters; we cut at :data:`CHUNK`) continues in
columns C, D, … of the same row. Keys (see :data:`META_KEYS`): the format tag, the
template (id, version, title, SHA-256 of its file, and its whole YAML text so a
returned form can be recomputed under its own template version), the employee, the
period, the defined names at generation, the tool version and the fingerprint.

The fingerprint
---------------

``HMAC-SHA256(secret, text)`` in lowercase hex, where ``text`` is UTF-8 of::

    kpi-excel-fingerprint/1
    template_version\\t<version>
    [cells]
    <coord>\\t<canonical value>        one line per locked, non-empty cell of the
    ...                                form sheet, in row-major order (A1, B1, …, A2)
    [meta]
    <key>\\t<value>                    every _meta key except ``fingerprint``, sorted
    ...

Values are escaped so each entry is one line (``\\`` -> ``\\\\``, newline -> ``\\n``,
CR -> ``\\r``, tab -> ``\\t``). :func:`canonical` makes a value read back by openpyxl
(from our own file, or after a round trip through Excel or LibreOffice) canonicalise
exactly as the value we wrote: numbers to at most 15 significant digits without
exponent or trailing zeros (0.65 written and 0.65 read as a float agree); booleans as
``TRUE``/``FALSE``; text as is; formulas as ``=`` + the formula text with whitespace
outside string literals removed and everything outside string literals upper-cased
(spreadsheets re-case names and functions and may add or drop spaces when they save).

Secret: the ``secret`` argument, else the environment variable ``KPI_EXCEL_SECRET``,
else :data:`DEFAULT_SECRET`. **The default key is not secret**: it is written here, in
the open source code, so a fingerprint made with it only detects accidental edits
and edits by someone who did not read this. Set ``KPI_EXCEL_SECRET`` to a private
value for both ``generate`` and ``collect`` to make tampering detectable.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import os
import re
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = [
    "FORMAT",
    "META_SHEET",
    "META_KEYS",
    "CHUNK",
    "FINGERPRINT_ALG",
    "DEFAULT_SECRET",
    "resolve_secret",
    "canonical",
    "fingerprint_text",
    "fingerprint",
    "verify",
    "read_meta",
    "locked_cells_from_openpyxl",
]

FORMAT = "kpi-excel-form/1"
META_SHEET = "_meta"
FINGERPRINT_ALG = "HMAC-SHA256"
#: Longest piece of a value in one cell (Excel allows 32,767 characters).
CHUNK = 32000

#: The built-in key. NOT SECRET: it is published in this source file. It makes the
#: fingerprint detect accidental edits only; set KPI_EXCEL_SECRET for real protection.
DEFAULT_SECRET = b"kpi-excel-default-key-NOT-SECRET"

#: Keys of the _meta sheet, in the order they are written.
META_KEYS = (
    "format",
    "template_id",
    "template_version",
    "template_title",
    "template_sha256",
    "template_yaml",
    "employee_id",
    "name",
    "department",
    "position",
    "period",
    "company",
    "roster_json",
    "names_json",
    "sheet",
    "generated_at",
    "tool_version",
    "fingerprint_alg",
    "fingerprint",
)

_HEADER = "kpi-excel-fingerprint/1"


def resolve_secret(secret: bytes | str | None = None) -> bytes:
    """The HMAC key: ``secret``, else ``$KPI_EXCEL_SECRET``, else the (public) default."""
    if isinstance(secret, str):
        secret = secret.encode("utf-8")
    if secret:
        return secret
    env = os.environ.get("KPI_EXCEL_SECRET")
    if env:
        return env.encode("utf-8")
    return DEFAULT_SECRET


def _number(v: Decimal | int | float) -> str:
    if isinstance(v, float):
        if v != v or v in (float("inf"), float("-inf")):
            return repr(v)
        d = Decimal(format(v, ".15g"))
    elif isinstance(v, int):
        d = Decimal(v)
    else:
        try:
            d = Decimal(format(float(v), ".15g")) if v.adjusted() < 300 else v
        except (InvalidOperation, OverflowError):
            d = v
    if d == 0:
        return "0"
    d = d.normalize()
    text = format(d, "f")
    return text


# String literals inside a formula: "…" with "" as an escaped quote.
_FORMULA_PARTS = re.compile(r'("(?:[^"]|"")*")|([^"]+)')
_SPACE = re.compile(r"\s+")


@functools.lru_cache(maxsize=16384)  # the same formulas recur in every form of a template
def _canonical_formula(text: str) -> str:
    body = text[1:] if text.startswith("=") else text
    out = []
    for lit, code in _FORMULA_PARTS.findall(body):
        if lit:
            out.append(lit)
        else:
            out.append(_SPACE.sub("", code).upper())
    return "=" + "".join(out)


def canonical(value: Any) -> str:
    """One cell's value as fingerprint text (see the module docstring).

    A ``str`` starting with ``=`` is a formula. ``Decimal``, ``int`` and ``float`` are
    numbers; ``bool`` is TRUE/FALSE; dates are ISO text; ``None`` is ``""``.
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, Decimal | int | float):
        return _number(value)
    if isinstance(value, dt.datetime):
        return value.replace(microsecond=0).isoformat()
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, str):
        if value.startswith("=") and len(value) > 1:
            return _canonical_formula(value)
        return value
    text = getattr(value, "text", None)  # openpyxl ArrayFormula and the like
    if isinstance(text, str):
        return _canonical_formula(text)
    return str(value)


def _esc(s: str) -> str:
    if len(s) > 512:  # the embedded template and the like: the same in every form
        got = _LONG_ESC.get(s)
        if got is None:
            got = _esc_now(s)
            if len(_LONG_ESC) >= 64:
                _LONG_ESC.clear()
            _LONG_ESC[s] = got
        return got
    return _esc_now(s)


def _esc_now(s: str) -> str:
    return s.replace("\\", "\\\\").replace("\r", "\\r").replace("\n", "\\n").replace("\t", "\\t")


#: long meta values -> their escaped text
_LONG_ESC: dict[str, str] = {}


def fingerprint_text(
    template_version: str,
    locked_cells: Iterable[tuple[str, object]],
    meta: Mapping[str, object],
    *,
    cell_lines: Iterable[str] | None = None,
) -> str:
    """The exact text the fingerprint is computed over (for tests and debugging).

    ``locked_cells`` must be in row-major order; empty values are skipped here too.
    ``cell_lines``, when given, are the cells' lines already made (:func:`cell_line`
    of each locked cell, the empty ones left out) and stand for ``locked_cells``.
    """
    if cell_lines is None:
        cell_lines = [ln for ln in (cell_line(c, v) for c, v in locked_cells) if ln]
    out = [fingerprint_head(template_version)]
    out += (line + "\n" for line in cell_lines)
    out.append("[meta]\n")
    for key in sorted(k for k in meta if k != "fingerprint"):
        v = meta[key]
        out.append(meta_line(str(key), "" if v is None else str(v)))
    return "".join(out)


def fingerprint_head(template_version: str) -> str:
    """The fingerprint text's lines before the cells' lines, each with its newline."""
    return f"{_HEADER}\ntemplate_version\t{_esc(str(template_version))}\n[cells]\n"


def meta_line(key: str, value: str) -> str:
    """One meta value's line of the fingerprint text, with its newline."""
    return f"{_esc(key)}\t{_esc(value)}\n"


def cell_line(coord: str, value: object) -> str:
    """One locked cell's line of the fingerprint text ("" for an empty value)."""
    if type(value) is str:
        # text and formulas recur form after form: their lines are kept
        line = _TEXT_LINES.get((coord, value))
        if line is None:
            c = canonical(value)
            line = f"{coord}\t{_esc(c)}" if c != "" else ""
            if len(_TEXT_LINES) >= 16384:
                _TEXT_LINES.clear()
            _TEXT_LINES[(coord, value)] = line
        return line
    c = canonical(value)
    return f"{coord}\t{_esc(c)}" if c != "" else ""


#: (coordinate, text) -> its line of the fingerprint text ("" for none)
_TEXT_LINES: dict[tuple[str, str], str] = {}


def fingerprint(
    secret: bytes | str | None,
    template_version: str,
    locked_cells: list[tuple[str, object]],
    meta: Mapping[str, object],
    *,
    cell_lines: Iterable[str] | None = None,
    cell_bytes: list[bytes] | None = None,
) -> str:
    """HMAC-SHA256 (hex) over :func:`fingerprint_text`. ``secret=None`` resolves it.

    ``cell_bytes``, when given, are the cells' lines (as ``cell_lines``) already
    encoded in UTF-8: a form's lines are mostly the same as the last form's, kept
    encoded, so its text is not encoded whole again (the UTF-8 of a join is the join
    of the UTF-8s: the bytes hashed are the same)."""
    key = resolve_secret(secret)
    keyed = _KEYED.get(key)
    if keyed is None:  # the key schedule once per key: each form copies it
        if len(_KEYED) >= 16:
            _KEYED.clear()
        keyed = _KEYED[key] = hmac.new(key, digestmod=hashlib.sha256)
    h = keyed.copy()
    if cell_bytes is None:
        text = fingerprint_text(template_version, locked_cells, meta, cell_lines=cell_lines)
        h.update(text.encode("utf-8"))
        return h.hexdigest()
    # fingerprint_text's lines, encoded part by part
    parts = [fingerprint_head(template_version).encode()]
    if cell_bytes:
        parts += (b"\n".join(cell_bytes), b"\n")
    parts.append(b"[meta]\n")
    for key_ in sorted(k for k in meta if k != "fingerprint"):
        v = meta[key_]
        parts.append(_meta_line_bytes(str(key_), "" if v is None else str(v)))
    h.update(b"".join(parts))
    return h.hexdigest()


def _meta_line_bytes(key: str, value: str) -> bytes:
    """:func:`meta_line` in UTF-8, kept: most meta values (the template, its version,
    the company, the period...) are the same in every form; a form's own (its
    employee's) are kept too, in a bounded table cleared when full."""
    kept, most = (_LINES, 4096) if len(value) <= 512 else (_LONG_LINES, 64)
    got = kept.get((key, value))
    if got is None:
        got = meta_line(key, value).encode()
        if len(kept) >= most:
            kept.clear()
        kept[(key, value)] = got
    return got


#: (key, value) -> its meta line, encoded: every value up to 512 characters
_LINES: dict[tuple[str, str], bytes] = {}
#: and the longer ones (the embedded template), at most 64 of them
_LONG_LINES: dict[tuple[str, str], bytes] = {}


#: HMAC-SHA256 objects keyed and not yet fed, per key
_KEYED: dict[bytes, hmac.HMAC] = {}


def verify(
    secret: bytes | str | None,
    locked_cells: list[tuple[str, object]],
    meta: Mapping[str, object],
) -> bool:
    """Whether ``meta['fingerprint']`` matches the cells and the other meta values."""
    want = str(meta.get("fingerprint") or "")
    got = fingerprint(secret, str(meta.get("template_version", "")), locked_cells, meta)
    return hmac.compare_digest(want, got)


def read_meta(workbook: Any) -> dict[str, str]:
    """The ``_meta`` sheet of an openpyxl workbook as {key: value}; {} if absent.

    Values continued over several columns are joined; every value is returned as
    text (a number a spreadsheet may have stored as a number comes back as its
    canonical text).
    """
    if META_SHEET not in workbook.sheetnames:
        return {}
    ws = workbook[META_SHEET]
    out: dict[str, str] = {}
    for i, row in enumerate(ws.iter_rows(values_only=True)):
        if i == 0 or not row or row[0] is None:
            continue
        key = str(row[0])
        parts = []
        for v in row[1:]:
            if v is None:
                continue
            parts.append(v if isinstance(v, str) else canonical(v))
        out[key] = "".join(parts)
    return out


def locked_cells_from_openpyxl(ws: Any) -> list[tuple[str, object]]:
    """Locked, non-empty cells of a worksheet (row-major) as (coordinate, value).

    The workbook must be loaded with formulas (``data_only=False``), so a formula cell
    gives its formula text. A cell without a style is locked, as in Excel.
    """
    out: list[tuple[str, object]] = []
    for row in ws.iter_rows():
        for cell in row:
            value = getattr(cell, "value", None)
            if value is None or value == "":
                continue
            prot = getattr(cell, "protection", None)
            locked = True if prot is None else bool(prot.locked)
            if locked:
                out.append((cell.coordinate, value))
    return out
