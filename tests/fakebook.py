"""A fake xlwings workbook over a real .xlsx/.xlsm, for the button entry points.

It implements the part of the xlwings API that :mod:`kpi_excel.buttons` uses (see
that module's docstring) and behaves like Excel where it matters to them:

* a sheet protected in the file is protected here: writing a locked cell raises
  :class:`ProtectedCellError` (Excel refuses with "The cell or chart you're trying to
  change is on a protected sheet") until ``sheet.api.Unprotect(password)`` is called
  with the password the file was protected with (checked against the file's hash);
* written text is coerced as Excel coerces typed text: ``'x`` is the text ``x``,
  ``=…`` is a formula, text that reads as a number becomes that number;
* values read back as xlwings returns them: numbers as float, empty as None, a block
  as a list of rows;
* a written formula has no value until the workbook is recalculated (never, here),
  just as the entry points must not rely on one.

``FakeBook.save(path)`` writes the current contents back through openpyxl (styles,
names and protection kept), so the same state can be fed to the file-based commands.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import openpyxl
from openpyxl.utils import column_index_from_string, get_column_letter
from openpyxl.utils.protection import hash_password

__all__ = ["FakeBook", "ProtectedCellError", "WrongPasswordError"]

_ADDR = re.compile(r"^\$?([A-Z]{1,3})\$?(\d+)(?::\$?([A-Z]{1,3})\$?(\d+))?$")


class ProtectedCellError(Exception):
    """Excel refuses to change a locked cell of a protected sheet."""


class WrongPasswordError(Exception):
    """Excel's Unprotect with a wrong password."""


@dataclass
class FakeCell:
    value: object = None
    formula: str | None = None
    locked: bool = True


def _number_text(s: str) -> float | None:
    try:
        return (
            float(s.replace(",", ""))
            if re.fullmatch(r"[+-]?[\d,]*\.?\d+(?:[eE][+-]?\d+)?", s)
            else None
        )
    except ValueError:
        return None


class FakeApi:
    """``sheet.api``: the protection calls, recorded, in COM and AppleScript spelling."""

    def __init__(self, sheet: FakeSheet) -> None:
        self.sheet = sheet
        self.calls: list[tuple[str, tuple, dict]] = []

    def _unprotect(self, password: str) -> None:
        want = self.sheet.password_hash
        if self.sheet.protected and want and hash_password(password) != want:
            raise WrongPasswordError("The password you supplied is not correct.")
        self.sheet.protected = False

    def _protect(self, password: str) -> None:
        self.sheet.protected = True
        self.sheet.password_hash = hash_password(password) if password else None

    def Unprotect(self, Password: str = "") -> None:  # noqa: N802, N803 - COM spelling
        self.calls.append(("Unprotect", (Password,), {}))
        self._unprotect(Password)

    def Protect(self, Password: str = "", **kw: Any) -> None:  # noqa: N802, N803
        self.calls.append(("Protect", (), {"Password": Password, **kw}))
        self._protect(Password)

    def unprotect(self, password: str = "") -> None:
        self.calls.append(("unprotect", (), {"password": password}))
        self._unprotect(password)

    def protect_worksheet(self, password: str = "", **kw: Any) -> None:
        self.calls.append(("protect_worksheet", (), {"password": password, **kw}))
        self._protect(password)


class FakeRange:
    def __init__(self, sheet: FakeSheet, r1: int, c1: int, r2: int, c2: int) -> None:
        self.sheet, self.r1, self.c1, self.r2, self.c2 = sheet, r1, c1, r2, c2

    @property
    def address(self) -> str:
        a = f"${get_column_letter(self.c1)}${self.r1}"
        if (self.r1, self.c1) == (self.r2, self.c2):
            return a
        return f"{a}:${get_column_letter(self.c2)}${self.r2}"

    @property
    def shape(self) -> tuple[int, int]:
        return (self.r2 - self.r1 + 1, self.c2 - self.c1 + 1)

    # -- value ------------------------------------------------------------------------
    @property
    def value(self) -> Any:
        rows = [
            [self.sheet.read(r, c) for c in range(self.c1, self.c2 + 1)]
            for r in range(self.r1, self.r2 + 1)
        ]
        nr, nc = self.shape
        if nr == 1 and nc == 1:
            return rows[0][0]
        if nr == 1:
            return rows[0]
        if nc == 1:
            return [row[0] for row in rows]
        return rows

    @value.setter
    def value(self, data: Any) -> None:
        if isinstance(data, list | tuple):
            rows = data if data and isinstance(data[0], list | tuple) else [data]
            for i, row in enumerate(rows):
                for j, v in enumerate(row):
                    self.sheet.write(self.r1 + i, self.c1 + j, v)
        else:
            for r in range(self.r1, self.r2 + 1):
                for c in range(self.c1, self.c2 + 1):
                    self.sheet.write(r, c, data)

    # -- formula ----------------------------------------------------------------------
    @property
    def formula(self) -> str:
        cell = self.sheet.cells.get((self.r1, self.c1))
        if cell is None:
            return ""
        if cell.formula is not None:
            return cell.formula
        v = cell.value
        if v is None:
            return ""
        if isinstance(v, float) and v.is_integer():
            return str(int(v))
        return str(v)

    @formula.setter
    def formula(self, text: str) -> None:
        self.sheet.write(self.r1, self.c1, text)


class FakeSheet:
    def __init__(self, book: FakeBook, name: str) -> None:
        self.book = book
        self.name = name
        self.cells: dict[tuple[int, int], FakeCell] = {}
        self.protected = False
        self.password_hash: str | None = None
        self.api = FakeApi(self)

    def range(self, address: str) -> FakeRange:
        mt = _ADDR.match(address.upper())
        if mt is None:
            raise ValueError(f"unsupported address {address!r}")
        c1, r1 = column_index_from_string(mt.group(1)), int(mt.group(2))
        if mt.group(3):
            c2, r2 = column_index_from_string(mt.group(3)), int(mt.group(4))
        else:
            c2, r2 = c1, r1
        return FakeRange(self, r1, c1, r2, c2)

    def clear_contents(self) -> None:
        if self.protected:
            raise ProtectedCellError(f"{self.name} is protected")
        for cell in self.cells.values():
            cell.value, cell.formula = None, None

    def read(self, r: int, c: int) -> object:
        cell = self.cells.get((r, c))
        if cell is None:
            return None
        v = cell.value
        if isinstance(v, bool) or v is None:
            return v
        if isinstance(v, int | float | Decimal):
            return float(v)
        if v == "":
            return None
        return v

    def write(self, r: int, c: int, v: object) -> None:
        cell = self.cells.setdefault((r, c), FakeCell())
        if self.protected and cell.locked:
            raise ProtectedCellError(
                f"{self.name}!{get_column_letter(c)}{r}: the cell is on a protected sheet"
            )
        self.book.writes.append((self.name, f"{get_column_letter(c)}{r}", v))
        if isinstance(v, Decimal):
            raise TypeError("xlwings cannot write a Decimal")
        cell.formula = None
        if isinstance(v, str):
            if v.startswith("'"):
                cell.value = v[1:]
            elif v.startswith("=") and len(v) > 1:
                cell.formula, cell.value = v, None  # computed on the next recalculation
            elif (n := _number_text(v.strip())) is not None:
                cell.value = n
            else:
                cell.value = v or None
        elif isinstance(v, bool) or v is None or isinstance(v, dt.date):
            cell.value = v
        elif isinstance(v, int | float):
            cell.value = float(v)
        else:
            raise TypeError(f"cannot write a {type(v).__name__}")

    def values(self) -> list[list[object]]:
        """All values (A1 to the last used cell), as rows."""
        used = [rc for rc, cell in self.cells.items() if cell.value is not None or cell.formula]
        if not used:
            return []
        nr, nc = max(r for r, _ in used), max(c for _, c in used)
        return [[self.read(r, c) for c in range(1, nc + 1)] for r in range(1, nr + 1)]


class FakeSheets:
    def __init__(self, book: FakeBook) -> None:
        self.book = book
        self.items: list[FakeSheet] = []

    def __iter__(self) -> Iterator[FakeSheet]:
        return iter(list(self.items))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: str | int) -> FakeSheet:
        if isinstance(key, int):
            return self.items[key]
        for s in self.items:
            if s.name == key:
                return s
        raise KeyError(key)

    def add(self, name: str | None = None, before: Any = None, after: Any = None) -> FakeSheet:
        sheet = FakeSheet(self.book, name or f"Sheet{len(self.items) + 1}")
        at = len(self.items)
        if after is not None:
            at = self.items.index(after) + 1
        elif before is not None:
            at = self.items.index(before)
        self.items.insert(at, sheet)
        return sheet


@dataclass
class FakeName:
    name: str
    refers_to_range: FakeRange


@dataclass
class FakeNames:
    items: dict[str, FakeName] = field(default_factory=dict)

    def __getitem__(self, name: str) -> FakeName:
        return self.items[name]

    def __contains__(self, name: str) -> bool:
        return name in self.items


class FakeBook:
    """A workbook loaded from ``path``, behaving like ``xlwings.Book`` for the buttons."""

    def __init__(self, path: str | Path) -> None:
        self.fullname = str(Path(path).resolve())
        self.name = Path(path).name
        self.writes: list[tuple[str, str, object]] = []
        keep_vba = str(path).lower().endswith(".xlsm")
        self._wb = openpyxl.load_workbook(path, keep_vba=keep_vba)
        cached = openpyxl.load_workbook(path, data_only=True)
        self.sheets = FakeSheets(self)
        for ws in self._wb.worksheets:
            sheet = FakeSheet(self, ws.title)
            wv = cached[ws.title]
            for row in ws.iter_rows():
                for c in row:
                    if not hasattr(c, "column") or c.column is None:
                        continue
                    locked = bool(c.protection.locked) if c.has_style else True
                    formula = c.value if c.data_type == "f" else None
                    value = wv.cell(c.row, c.column).value if formula else c.value
                    sheet.cells[(c.row, c.column)] = FakeCell(value, formula, locked)
            sheet.protected = bool(ws.protection.sheet)
            sheet.password_hash = ws.protection.password
            self.sheets.items.append(sheet)
        self.names = FakeNames()
        for name, dn in self._wb.defined_names.items():
            dests = list(dn.destinations)
            if len(dests) != 1:
                continue
            title, ref = dests[0]
            rng = self.sheets[title].range(ref.replace("$", ""))
            self.names.items[name] = FakeName(name, rng)

    def save(self, path: str | Path) -> Path:
        """Write the current contents (not a recalculation) back to a file."""
        for sheet in self.sheets:
            if sheet.name not in self._wb.sheetnames:
                self._wb.create_sheet(sheet.name)
            ws = self._wb[sheet.name]
            for (r, c), cell in sheet.cells.items():
                target = ws.cell(r, c)
                if type(target).__name__ == "MergedCell":
                    continue
                target.value = cell.formula if cell.formula is not None else cell.value
            ws.protection.sheet = sheet.protected
        self._wb.save(path)
        return Path(path)
