"""Compare two .xlsx files part by part, in the manner of XlsxWriter's test helper
(``test/helperfunctions.py::_compare_xlsx_files``).

Both files are unzipped; the lists of parts must match; each XML part is normalised
(volatile attributes and elements removed, one element per line) and compared as
text, binary parts byte for byte. The result is ``None`` when the files match, else a
readable unified diff of the first differing parts, for ``assert diff is None, diff``.
"""

from __future__ import annotations

import difflib
import re
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path

__all__ = ["compare_xlsx", "xml_lines", "VOLATILE"]

#: Elements that legitimately differ between saves (per part name regex).
VOLATILE: dict[str, list[str]] = {
    r"docProps/core\.xml": [
        r"<dcterms:created[^>]*>[^<]*</dcterms:created>",
        r"<dcterms:modified[^>]*>[^<]*</dcterms:modified>",
    ],
    r"docProps/app\.xml": [r"<AppVersion>[^<]*</AppVersion>"],
    r"xl/workbook\.xml": [r"<calcPr[^>]*/>", r"<workbookView[^>]*/>", r"<fileVersion[^>]*/>"],
}


def xml_lines(text: str, drop: Iterable[str] = ()) -> list[str]:
    """An XML part as one element per line, with the ``drop`` patterns removed."""
    for pat in drop:
        text = re.sub(pat, "", text)
    text = re.sub(r">\s+<", "><", text.strip())
    return [
        line if line.startswith("<") else "<" + line
        for line in text.replace("><", ">\n<").split("\n")
    ]


def compare_xlsx(
    got: str | Path,
    expected: str | Path,
    *,
    ignore_files: Iterable[str] = (),
    ignore_elements: Mapping[str, list[str]] | None = None,
    normalise: Mapping[str, list[tuple[str, str]]] | None = None,
    context: int = 3,
    max_lines: int = 120,
) -> str | None:
    """None if ``got`` matches ``expected`` part by part, else a diff.

    ``ignore_files``: part names left out; ``ignore_elements``: extra regexes per part
    name regex (added to :data:`VOLATILE`); ``normalise``: (pattern, replacement) pairs
    per part name regex, applied before comparing (e.g. a fingerprint's hex digits).
    """
    skip = set(ignore_files)
    drops: dict[str, list[str]] = {k: list(v) for k, v in VOLATILE.items()}
    for k, v in (ignore_elements or {}).items():
        drops.setdefault(k, []).extend(v)
    with zipfile.ZipFile(got) as za, zipfile.ZipFile(expected) as zb:
        parts_a = sorted(n for n in za.namelist() if n not in skip)
        parts_b = sorted(n for n in zb.namelist() if n not in skip)
        if parts_a != parts_b:
            diff = difflib.unified_diff(
                parts_b, parts_a, "expected parts", "got parts", lineterm=""
            )
            return "the files hold different parts:\n" + "\n".join(diff)
        out: list[str] = []
        for name in parts_a:
            a, b = za.read(name), zb.read(name)
            if a == b:
                continue
            if not name.endswith((".xml", ".rels", ".vml")):
                out.append(f"{name}: binary part differs ({len(a)} vs {len(b)} bytes expected)")
                continue
            pats = [p for k, v in drops.items() if re.fullmatch(k, name) for p in v]
            la = xml_lines(a.decode("utf-8"), pats)
            lb = xml_lines(b.decode("utf-8"), pats)
            for k, subs in (normalise or {}).items():
                if re.fullmatch(k, name):
                    for pat, rep in subs:
                        la = [re.sub(pat, rep, x) for x in la]
                        lb = [re.sub(pat, rep, x) for x in lb]
            if la == lb:
                continue
            diff = list(
                difflib.unified_diff(
                    lb, la, f"expected/{name}", f"got/{name}", n=context, lineterm=""
                )
            )
            if len(diff) > max_lines:
                diff = diff[:max_lines] + [f"… ({len(diff) - max_lines} more diff lines)"]
            out.append("\n".join(diff))
        return "\n\n".join(out) if out else None
