"""Worker for :mod:`kpi_excel._lo`: drives a running LibreOffice over UNO.

Runs under a Python that can ``import uno`` (on Debian: ``/usr/bin/python3``), which
is usually NOT the project's Python. It therefore imports only the standard library
and ``uno``; nothing from ``kpi_excel`` and no third-party package.

Usage::

    python3 -I _lo_worker.py REQUEST.json

REQUEST.json is an object::

    {"op": "recalc" | "run_macro" | "button_macros",
     "pipe": "<pipe name soffice was started with>",
     "connect_timeout": 30,
     "results": "<path of a JSON-lines file to append one result per job to>",
     "terminate": true,          # ask soffice to quit at the end (best effort)
     "jobs": [...]}

One JSON object is appended (and flushed) to ``results`` per job, as soon as the job
is done, so the caller knows how far a batch got if LibreOffice crashes on a file.
Exit status: 0 done, 3 could not connect to soffice, 4 lost the connection mid-batch,
2 bad request.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import traceback
import uuid

import uno  # type: ignore[import-not-found]
from com.sun.star.beans import PropertyValue  # type: ignore[import-not-found]
from com.sun.star.connection import NoConnectException  # type: ignore[import-not-found]
from com.sun.star.lang import DisposedException  # type: ignore[import-not-found]

# com.sun.star.table.CellContentType
_EMPTY, _VALUE, _TEXT, _FORMULA = "EMPTY", "VALUE", "TEXT", "FORMULA"
# com.sun.star.sheet.FormulaResult
_FR_VALUE, _FR_STRING, _FR_ERROR = 1, 2, 4
# com.sun.star.sheet.CellFlags: VALUE | DATETIME | STRING | FORMULA
_CLEAR_FLAGS = 1 | 2 | 4 | 16
# com.sun.star.document.MacroExecMode
_NEVER_EXECUTE, _ALWAYS_EXECUTE_NO_WARN = 0, 4

# LibreOffice internal error codes (FormulaError) -> the Excel spelling.
_ERROR_NAMES = {
    503: "#NUM!",  # IllegalFPOperation
    519: "#VALUE!",  # NoValue
    521: "#NULL!",  # NoCode (empty intersection)
    524: "#REF!",  # NoRef
    525: "#NAME?",  # NoName
    532: "#DIV/0!",  # DivisionByZero
    32767: "#N/A",  # NotAvailable
}

_FILTERS = {
    ".xlsx": "Calc Office Open XML",
    ".xlsm": "Calc MS Excel 2007 VBA XML",
    ".xls": "MS Excel 97",
    ".ods": "calc8",
}


class LostConnection(Exception):
    pass


def _props(**kw):
    out = []
    for k, v in kw.items():
        p = PropertyValue()
        p.Name = k
        p.Value = v
        out.append(p)
    return tuple(out)


def _url(path: str) -> str:
    return uno.systemPathToFileUrl(os.path.abspath(path))


def connect(pipe: str, timeout: float):
    local = uno.getComponentContext()
    resolver = local.ServiceManager.createInstanceWithContext(
        "com.sun.star.bridge.UnoUrlResolver", local
    )
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            ctx = resolver.resolve(f"uno:pipe,name={pipe};urp;StarOffice.ComponentContext")
            smgr = ctx.ServiceManager
            desktop = smgr.createInstanceWithContext("com.sun.star.frame.Desktop", ctx)
            return ctx, desktop
        except NoConnectException as e:  # soffice not listening yet
            last = e
        except Exception as e:  # noqa: BLE001 - e.g. RuntimeException while starting up
            last = e
        if time.monotonic() > deadline:
            raise TimeoutError(f"could not connect to soffice pipe {pipe!r}: {last}")
        time.sleep(0.25)


def _is_disposed(exc: BaseException) -> bool:
    """True when the UNO bridge to soffice is gone (soffice crashed or quit)."""
    if isinstance(exc, DisposedException):
        return True
    text = str(exc).lower()
    return "urp bridge" in text or ("bridge" in text and "disposed" in text)


# ---------------------------------------------------------------- names / cells


def _lookup_name(doc, name: str):
    """The single cell a defined name (or 'Sheet'!A1 style address) refers to."""
    ranges = doc.NamedRanges
    if ranges.hasByName(name):
        return ranges.getByName(name).getReferredCells().getCellByPosition(0, 0)
    # sheet-local names (Excel localSheetId) live on each sheet
    sheets = doc.Sheets
    for i in range(sheets.getCount()):
        sheet = sheets.getByIndex(i)
        try:
            local = sheet.NamedRanges
        except Exception:  # noqa: BLE001 - older LibreOffice: no sheet-local names via API
            break
        if local.hasByName(name):
            return local.getByName(name).getReferredCells().getCellByPosition(0, 0)
    # last resort: an address such as 'Sheet Name'!$H$7 or Sheet1!B2
    if "!" in name:
        sheet_part, _, addr = name.rpartition("!")
        sheet_name = sheet_part.strip()
        if sheet_name.startswith("'") and sheet_name.endswith("'"):
            sheet_name = sheet_name[1:-1].replace("''", "'")
        if sheets.hasByName(sheet_name):
            rng = sheets.getByName(sheet_name).getCellRangeByName(addr.replace("$", ""))
            return rng.getCellByPosition(0, 0)
    raise KeyError(f"no defined name {name!r} in the workbook")


def _fill(cell, value) -> None:
    if value is None:
        cell.clearContents(_CLEAR_FLAGS)
    elif isinstance(value, bool):
        cell.setValue(1.0 if value else 0.0)
    elif isinstance(value, (int, float)):
        cell.setValue(float(value))
    elif isinstance(value, str):
        # setString never parses: "八十", "80" or "=1+1" all stay text.
        cell.setString(value)
    else:
        raise TypeError(f"cannot type a {type(value).__name__} into a cell")


def _error_text(cell) -> str:
    code = cell.getError()
    name = _ERROR_NAMES.get(code)
    if name:
        return name
    shown = cell.getString()
    return shown if shown else f"Err:{code}"


def _read(cell):
    """(value, error) of a cell: number -> float, text -> str, empty -> None."""
    kind = cell.getType().value
    if kind == _EMPTY:
        return None, None
    if kind == _VALUE:
        return float(cell.getValue()), None
    if kind == _TEXT:
        return cell.getString(), None
    # formula
    if cell.getError() != 0:
        err = _error_text(cell)
        return err, err
    result = cell.FormulaResultType2
    if result == _FR_ERROR:
        err = _error_text(cell)
        return err, err
    if result == _FR_STRING:
        return cell.getString(), None
    return float(cell.getValue()), None


# ---------------------------------------------------------------- ops


def _load(desktop, src: str, macros: bool):
    props = _props(
        Hidden=True,
        ReadOnly=False,
        MacroExecutionMode=_ALWAYS_EXECUTE_NO_WARN if macros else _NEVER_EXECUTE,
        UpdateDocMode=0,  # NO_UPDATE: never refresh external links
    )
    doc = desktop.loadComponentFromURL(_url(src), "_blank", 0, props)
    if doc is None:
        raise RuntimeError(f"LibreOffice could not open {src}")
    return doc


def _store(doc, src: str, out: str) -> None:
    ext = os.path.splitext(out)[1].lower()
    flt = _FILTERS.get(ext, "Calc Office Open XML")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    doc.storeToURL(_url(out), _props(FilterName=flt, Overwrite=True))


def _close(doc) -> None:
    if doc is None:
        return
    try:
        doc.close(True)
    except Exception:  # noqa: BLE001
        with contextlib.suppress(Exception):
            doc.dispose()


def do_recalc(desktop, job: dict) -> dict:
    src, out = job["src"], job["out"]
    res = {"src": src, "out": None, "values": {}, "errors": {}, "fatal": None}
    doc = None
    try:
        doc = _load(desktop, src, bool(job.get("macros")))
        for name, value in (job.get("fills") or {}).items():
            try:
                _fill(_lookup_name(doc, name), value)
            except Exception as e:  # noqa: BLE001
                if _is_disposed(e):
                    raise
                res["errors"][name] = f"fill failed: {e}"
        doc.calculateAll()
        for name in job.get("read") or []:
            try:
                value, err = _read(_lookup_name(doc, name))
            except Exception as e:  # noqa: BLE001
                if _is_disposed(e):
                    raise
                value, err = None, f"read failed: {e}"
            res["values"][name] = value
            if err is not None:
                before = res["errors"].get(name)
                res["errors"][name] = f"{before}; {err}" if before else err
        _store(doc, src, out)
        res["out"] = out
    except Exception as e:  # noqa: BLE001
        if _is_disposed(e):
            raise LostConnection(str(e)) from e
        res["fatal"] = f"{type(e).__name__}: {e}"
    finally:
        _close(doc)
    return res


_HARNESS_CODE = """{option}
Function {func}() As String
    On Error GoTo Failed
    {module}.{macro}
    {func} = ""
    Exit Function
Failed:
    {func} = "Basic error " & Err & ": " & Error$
End Function
"""


def _parse_basic_url(url: str):
    """(library, module, macro) of a document Basic script URL, else None."""
    prefix = "vnd.sun.star.script:"
    if not url.startswith(prefix) or "?" not in url:
        return None
    path, _, query = url[len(prefix) :].partition("?")
    params = dict(p.partition("=")[::2] for p in query.split("&"))
    if params.get("language") != "Basic" or params.get("location") != "document":
        return None
    parts = path.split(".")
    if len(parts) != 3 or not all(parts):
        return None
    return tuple(parts)


def _invoke_checked(doc, url: str):
    """Run a document Basic macro through a temporary wrapper module that traps Basic
    runtime errors (headless LibreOffice swallows them: invoke() returns normally).

    Returns (ran_through_wrapper, error text or None).
    """
    parsed = _parse_basic_url(url)
    if parsed is None:
        return False, None
    lib_name, module, macro = parsed
    try:
        libs = doc.BasicLibraries
        if not libs.hasByName(lib_name):
            return False, None
        libs.loadLibrary(lib_name)
        lib = libs.getByName(lib_name)
        vba = any("Option VBASupport 1" in (lib.getByName(m) or "") for m in lib.getElementNames())
        wrapper = "KpiHarness" + uuid.uuid4().hex[:8]
        func = "KpiHarnessRun"
        code = _HARNESS_CODE.format(
            option="Option VBASupport 1" if vba else "", func=func, module=module, macro=macro
        )
        lib.insertByName(wrapper, code)
    except Exception as e:  # noqa: BLE001 - e.g. a password-protected library
        if _is_disposed(e):
            raise
        return False, None
    try:
        script = doc.getScriptProvider().getScript(
            f"vnd.sun.star.script:{lib_name}.{wrapper}.{func}?language=Basic&location=document"
        )
        out = script.invoke((), (), ())
        value = out[0] if isinstance(out, tuple) else out
        return True, (str(value) if value else None)
    finally:
        try:
            lib.removeByName(wrapper)
        except Exception as e:  # noqa: BLE001
            if _is_disposed(e):
                raise


def do_run_macro(desktop, job: dict) -> dict:
    src, out = job["src"], job["out"]
    res = {"src": src, "ok": False, "error": None, "out": None, "checked": False}
    doc = None
    try:
        doc = _load(desktop, src, True)
        url = job["macro_url"]
        try:
            checked, err = _invoke_checked(doc, url)
            if not checked:
                doc.getScriptProvider().getScript(url).invoke((), (), ())
            res["checked"] = checked
            res["error"] = err
            res["ok"] = err is None
        except Exception as e:  # noqa: BLE001
            if _is_disposed(e):
                raise
            res["error"] = f"{type(e).__name__}: {getattr(e, 'Message', '') or e}"
        if job.get("recalc", True):
            doc.calculateAll()
        _store(doc, src, out)
        res["out"] = out
    except Exception as e:  # noqa: BLE001
        if _is_disposed(e):
            raise LostConnection(str(e)) from e
        res["ok"] = False
        res["error"] = res["error"] or f"{type(e).__name__}: {e}"
    finally:
        _close(doc)
    return res


def _control_label(model) -> str | None:
    for prop in ("Label", "Text", "Name"):
        try:
            v = model.getPropertyValue(prop)
        except Exception:  # noqa: BLE001
            continue
        if v:
            return str(v)
    return None


def _walk_form(form, sheet_name: str, path: str, out: list) -> None:
    """Every control of one form (recursing into sub-forms) with its bound events."""
    for i in range(form.getCount()):
        child = form.getByIndex(i)
        try:
            events = form.getScriptEvents(i)  # XEventAttacherManager
        except Exception:  # noqa: BLE001
            events = ()
        bound = [
            {
                "listener": ev.ListenerType,
                "method": ev.EventMethod,
                "type": ev.ScriptType,
                "code": ev.ScriptCode,
            }
            for ev in events
        ]
        is_form = child.supportsService("com.sun.star.form.component.Form")
        if is_form:
            _walk_form(child, sheet_name, f"{path}/{child.Name}", out)
            continue
        macro = None
        for ev in bound:
            if ev["code"] and ev["method"] in ("actionPerformed", "mousePressed", "mouseReleased"):
                macro = ev["code"]
                break
        if macro is None and bound:
            macro = bound[0]["code"]
        out.append(
            {
                "sheet": sheet_name,
                "form": path,
                "index": i,
                "name": getattr(child, "Name", None),
                "label": _control_label(child),
                "class_id": _safe(lambda c=child: c.getPropertyValue("ClassId")),
                "is_button": child.supportsService("com.sun.star.form.component.CommandButton"),
                "macro": macro,
                "events": bound,
            }
        )


def _safe(fn):
    try:
        return fn()
    except Exception:  # noqa: BLE001
        return None


def do_button_macros(desktop, job: dict) -> dict:
    src = job["src"]
    res = {"src": src, "buttons": [], "error": None}
    doc = None
    try:
        # macros enabled so the VBA/Basic bindings are imported, but nothing is run
        doc = _load(desktop, src, bool(job.get("macros", True)))
        sheets = doc.Sheets
        for si in range(sheets.getCount()):
            sheet = sheets.getByIndex(si)
            forms = sheet.getDrawPage().getForms()
            for fi in range(forms.getCount()):
                form = forms.getByIndex(fi)
                _walk_form(form, sheet.getName(), form.Name, res["buttons"])
    except Exception as e:  # noqa: BLE001
        if _is_disposed(e):
            raise LostConnection(str(e)) from e
        res["error"] = f"{type(e).__name__}: {e}"
    finally:
        _close(doc)
    return res


_OPS = {"recalc": do_recalc, "run_macro": do_run_macro, "button_macros": do_button_macros}


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: _lo_worker.py REQUEST.json", file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as f:
        req = json.load(f)
    op = _OPS.get(req.get("op"))
    if op is None:
        print(f"unknown op {req.get('op')!r}", file=sys.stderr)
        return 2
    t0 = time.monotonic()
    try:
        _ctx, desktop = connect(req["pipe"], float(req.get("connect_timeout", 30)))
    except TimeoutError as e:
        print(str(e), file=sys.stderr)
        return 3
    print(f"connected after {time.monotonic() - t0:.2f}s", file=sys.stderr, flush=True)
    status = 0
    with open(req["results"], "a", encoding="utf-8") as results:
        for job in req["jobs"]:
            t1 = time.monotonic()
            try:
                res = op(desktop, job)
            except LostConnection as e:
                print(f"lost soffice while on {job.get('src')}: {e}", file=sys.stderr)
                status = 4
                break
            except Exception:  # noqa: BLE001 - a bug here must not lose the batch
                res = {"src": job.get("src"), "fatal": traceback.format_exc(limit=3)}
            res["id"] = job.get("id")
            res["seconds"] = round(time.monotonic() - t1, 3)
            results.write(json.dumps(res, ensure_ascii=False) + "\n")
            results.flush()
    if status == 0 and req.get("terminate", True):
        # the bridge drops as soffice quits, which may raise here
        with contextlib.suppress(Exception):
            desktop.terminate()
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv))
