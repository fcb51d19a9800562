/*
 * kpi_excel._speedups: the fast reader's per-cell loops and a few other loops, in C.
 *
 * Each function does exactly what a loop in kpi_excel/fastread.py does, in the same
 * order and with the same results; the Python loops stay as the reference and run
 * when this module is not built (see fastread._SPEEDUPS). tests/test_speedups.py
 * runs both on the same sheets and compares every result.
 *
 * Nothing here reads a file: the loops walk pieces of sheet XML that Python has cut,
 * look them up in the caches Python keeps, and call back into Python for whatever
 * is not cached. plain_rows and rows_from_plain encode a collection's rows for its
 * spool file (kpi_excel/spool.py keeps them in Python too); score_rows is the loop
 * of ledger.ScoreRow.rows (ScoreRow._rows in Python).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* The first place at or after `from` where `needle` (m > 0 bytes) is in h[0:n], or -1. */
static Py_ssize_t
find_in(const char *h, Py_ssize_t n, Py_ssize_t from, const char *needle, Py_ssize_t m)
{
    if (from < 0)
        from = 0;
    while (from + m <= n) {
        const char *at = memchr(h + from, needle[0], (size_t)(n - m + 1 - from));
        if (at == NULL)
            return -1;
        if (memcmp(at, needle, (size_t)m) == 0)
            return at - h;
        from = (at - h) + 1;
    }
    return -1;
}

/* cut_pieces(data, prev) -> list[bytes]
 *
 * data.split(b'<c r="'), with each piece that equals the piece at the same place in
 * `prev` (a list of bytes: the same sheet of the previous form) given as that very
 * object. The pieces that recur are then not copied, and their hash is known: the
 * lookups of scan_pieces find them by identity.
 */
static PyObject *
cut_pieces(PyObject *self, PyObject *args)
{
    Py_buffer buf;
    PyObject *prev;
    if (!PyArg_ParseTuple(args, "y*O:cut_pieces", &buf, &prev))
        return NULL;
    if (prev != Py_None && !PyList_Check(prev)) {
        PyBuffer_Release(&buf);
        PyErr_SetString(PyExc_TypeError, "prev is a list of bytes or None");
        return NULL;
    }
    static const char token[] = "<c r=\"";
    const Py_ssize_t tlen = 6;
    const char *data = (const char *)buf.buf;
    const Py_ssize_t n = buf.len;
    Py_ssize_t nprev = prev == Py_None ? 0 : PyList_GET_SIZE(prev);
    PyObject *out = PyList_New(0);
    if (out == NULL) {
        PyBuffer_Release(&buf);
        return NULL;
    }
    Py_ssize_t start = 0, i = 0;
    for (;;) {
        Py_ssize_t end = find_in(data, n, start, token, tlen); /* the next token */
        Py_ssize_t stop = end < 0 ? n : end;
        Py_ssize_t len = stop - start;
        PyObject *piece = NULL;
        if (i < nprev) {
            PyObject *old = PyList_GET_ITEM(prev, i);
            if (PyBytes_CheckExact(old) && PyBytes_GET_SIZE(old) == len &&
                memcmp(PyBytes_AS_STRING(old), data + start, (size_t)len) == 0) {
                piece = old;
                Py_INCREF(piece);
            }
        }
        if (piece == NULL) {
            piece = PyBytes_FromStringAndSize(data + start, len);
            if (piece == NULL)
                goto fail;
        }
        int rc = PyList_Append(out, piece);
        Py_DECREF(piece);
        if (rc < 0)
            goto fail;
        i++;
        if (end < 0)
            break;
        start = end + tlen;
    }
    PyBuffer_Release(&buf);
    return out;
fail:
    PyBuffer_Release(&buf);
    Py_DECREF(out);
    return NULL;
}

/* scan_pieces(pieces, known, read_piece) -> list | None
 *
 * fastread._scan's loop over the cell pieces pieces[1:]: each piece's reading is
 * known[piece], else read_piece(piece) (which may raise); a reading is a tuple
 * (order key, coordinate, cell or None, whether its row is the last). The readings
 * with a cell, in order; None when the keys do not rise strictly, a piece follows
 * the last row, or the last row is never reached.
 */
static PyObject *
scan_pieces(PyObject *self, PyObject *args)
{
    PyObject *pieces, *known, *read_piece;
    if (!PyArg_ParseTuple(args, "O!O!O:scan_pieces", &PyList_Type, &pieces,
                          &PyDict_Type, &known, &read_piece))
        return NULL;
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    long long last = 0;
    int ended = 0;
    Py_ssize_t n = PyList_GET_SIZE(pieces);
    for (Py_ssize_t i = 1; i < n; i++) {
        PyObject *piece = PyList_GET_ITEM(pieces, i);
        PyObject *got = PyDict_GetItemWithError(known, piece); /* borrowed */
        if (got != NULL) {
            Py_INCREF(got);
        } else {
            if (PyErr_Occurred())
                goto fail;
            got = PyObject_CallOneArg(read_piece, piece);
            if (got == NULL)
                goto fail;
        }
        if (!PyTuple_Check(got) || PyTuple_GET_SIZE(got) != 4) {
            Py_DECREF(got);
            PyErr_SetString(PyExc_TypeError, "a piece's reading is a tuple of 4");
            goto fail;
        }
        long long key = PyLong_AsLongLong(PyTuple_GET_ITEM(got, 0));
        if (key == -1 && PyErr_Occurred()) {
            Py_DECREF(got);
            goto fail;
        }
        int ends = PyObject_IsTrue(PyTuple_GET_ITEM(got, 3));
        if (ends < 0) {
            Py_DECREF(got);
            goto fail;
        }
        if (key <= last || ended) {
            Py_DECREF(got);
            Py_DECREF(out);
            Py_RETURN_NONE;
        }
        last = key;
        ended = ends;
        if (PyTuple_GET_ITEM(got, 2) != Py_None && PyList_Append(out, got) < 0) {
            Py_DECREF(got);
            goto fail;
        }
        Py_DECREF(got);
    }
    if (!ended) {
        Py_DECREF(out);
        Py_RETURN_NONE;
    }
    return out;
fail:
    Py_DECREF(out);
    return NULL;
}

/* The view kept for `piece` in `kept` (by its identity: a kept view is a tuple of 2,
 * or of 6 for a sheet record, whose first item is the piece itself), or a new one
 * made by make(piece) and kept. Returns a new reference. */
static PyObject *
kept_view(PyObject *kept, PyObject *piece, PyObject *make, int pair)
{
    PyObject *id = PyLong_FromVoidPtr(piece);
    if (id == NULL)
        return NULL;
    PyObject *got = PyDict_GetItemWithError(kept, id); /* borrowed */
    if (got != NULL && PyTuple_Check(got) && PyTuple_GET_SIZE(got) == (pair ? 2 : 6) &&
        PyTuple_GET_ITEM(got, 0) == piece) {
        Py_INCREF(got);
        Py_DECREF(id);
        return got;
    }
    if (got == NULL && PyErr_Occurred()) {
        Py_DECREF(id);
        return NULL;
    }
    PyObject *made = PyObject_CallOneArg(make, piece);
    if (made == NULL) {
        Py_DECREF(id);
        return NULL;
    }
    if (pair) { /* kept as (piece, view) */
        PyObject *t = PyTuple_Pack(2, piece, made);
        Py_DECREF(made);
        if (t == NULL) {
            Py_DECREF(id);
            return NULL;
        }
        made = t;
    } else if (!PyTuple_Check(made) || PyTuple_GET_SIZE(made) != 6) {
        Py_DECREF(made);
        Py_DECREF(id);
        PyErr_SetString(PyExc_TypeError, "a sheet record is a tuple of 6");
        return NULL;
    }
    if (PyDict_SetItem(kept, id, made) < 0) {
        Py_DECREF(made);
        Py_DECREF(id);
        return NULL;
    }
    Py_DECREF(id);
    return made;
}

/* sheet_records(entries, kept, make_record) -> (records, by, lines, encoded) | None
 *
 * fastread._Views.sheet_cells's loop: each entry's record (kept by the entry's
 * identity, else make_record(entry), kept) -- (piece, row, line, value, locked, line
 * in UTF-8); None as soon as a record's row is None. by maps the coordinate of each
 * cell with a value to it; lines and encoded gather the non-empty lines (encoded
 * None once a line has no UTF-8).
 */
static PyObject *
sheet_records(PyObject *self, PyObject *args)
{
    PyObject *entries, *kept, *make;
    if (!PyArg_ParseTuple(args, "O!O!O:sheet_records", &PyList_Type, &entries,
                          &PyDict_Type, &kept, &make))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(entries);
    PyObject *records = PyList_New(0), *by = PyDict_New(), *lines = PyList_New(0);
    PyObject *encoded = PyList_New(0);
    if (records == NULL || by == NULL || lines == NULL || encoded == NULL)
        goto fail;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *piece = PyList_GET_ITEM(entries, i);
        PyObject *got = kept_view(kept, piece, make, 0);
        if (got == NULL)
            goto fail;
        if (PyTuple_GET_ITEM(got, 1) == Py_None) {
            Py_DECREF(got);
            Py_DECREF(records);
            Py_DECREF(by);
            Py_DECREF(lines);
            Py_XDECREF(encoded);
            Py_RETURN_NONE;
        }
        if (PyList_Append(records, got) < 0)
            goto fail_got;
        PyObject *value = PyTuple_GET_ITEM(got, 3);
        if (value != Py_None) {
            if (!PyTuple_Check(piece) || PyTuple_GET_SIZE(piece) < 2) {
                PyErr_SetString(PyExc_TypeError, "a piece is a tuple of 4");
                goto fail_got;
            }
            if (PyDict_SetItem(by, PyTuple_GET_ITEM(piece, 1), value) < 0)
                goto fail_got;
            PyObject *line = PyTuple_GET_ITEM(got, 2);
            int has = PyObject_IsTrue(line);
            if (has < 0)
                goto fail_got;
            if (has) {
                if (PyList_Append(lines, line) < 0)
                    goto fail_got;
                PyObject *enc = PyTuple_GET_ITEM(got, 5);
                if (enc == Py_None) {
                    Py_CLEAR(encoded);
                } else if (encoded != NULL && PyList_Append(encoded, enc) < 0) {
                    goto fail_got;
                }
            }
        }
        Py_DECREF(got);
        continue;
    fail_got:
        Py_DECREF(got);
        goto fail;
    }
    if (encoded == NULL) {
        encoded = Py_None;
        Py_INCREF(encoded);
    }
    return Py_BuildValue("(NNNN)", records, by, lines, encoded);
fail:
    Py_XDECREF(records);
    Py_XDECREF(by);
    Py_XDECREF(lines);
    Py_XDECREF(encoded);
    return NULL;
}

/* xml_views(entries, kept, make_view) -> dict
 *
 * fastread._Views.xml_cells's loop: coordinate -> each entry's view, kept by the
 * entry's identity as (entry, view), else make_view(entry) and kept.
 */
static PyObject *
xml_views(PyObject *self, PyObject *args)
{
    PyObject *entries, *kept, *make;
    if (!PyArg_ParseTuple(args, "O!O!O:xml_views", &PyList_Type, &entries, &PyDict_Type,
                          &kept, &make))
        return NULL;
    PyObject *out = PyDict_New();
    if (out == NULL)
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(entries);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *piece = PyList_GET_ITEM(entries, i);
        if (!PyTuple_Check(piece) || PyTuple_GET_SIZE(piece) < 2) {
            PyErr_SetString(PyExc_TypeError, "a piece is a tuple of 4");
            goto fail;
        }
        PyObject *got = kept_view(kept, piece, make, 1);
        if (got == NULL)
            goto fail;
        int rc = PyDict_SetItem(out, PyTuple_GET_ITEM(piece, 1), PyTuple_GET_ITEM(got, 1));
        Py_DECREF(got);
        if (rc < 0)
            goto fail;
    }
    return out;
fail:
    Py_DECREF(out);
    return NULL;
}

/* cell_tags_near(xml) -> bool
 *
 * Whether every cell start tag of a worksheet is written <c r="A1" with a reference
 * within Z999 and no cell tag has a namespace prefix: what read._used_area finds with
 * two regular expressions, none of them matching --
 *   <c(?! r="[A-Z][0-9]{1,3}")[\s/>]    and    :c[\s/>]
 * (\s of a bytes pattern: space, \t, \n, \r, \f, \v).
 */
static int
tag_end(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v' ||
           c == '/' || c == '>';
}

static PyObject *
cell_tags_near(PyObject *self, PyObject *args)
{
    Py_buffer buf;
    if (!PyArg_ParseTuple(args, "y*:cell_tags_near", &buf))
        return NULL;
    const char *d = (const char *)buf.buf;
    const Py_ssize_t n = buf.len;
    int near = 1;
    for (Py_ssize_t i = 1; near && i + 1 < n; i++) {
        const char *c = memchr(d + i, 'c', (size_t)(n - 1 - i));
        if (c == NULL)
            break;
        i = c - d; /* 1 <= i <= n - 2 */
        if (!tag_end(d[i + 1]))
            continue;
        if (d[i - 1] == ':') {
            near = 0; /* a prefixed cell tag */
        } else if (d[i - 1] == '<') {
            /* <c followed by a tag end: near only as  r="[A-Z][0-9]{1,3}" */
            Py_ssize_t j = i + 1;
            int ok = j + 5 < n && memcmp(d + j, " r=\"", 4) == 0 && d[j + 4] >= 'A' &&
                     d[j + 4] <= 'Z';
            if (ok) {
                Py_ssize_t k = j + 5, digits = 0;
                while (k < n && digits < 4 && d[k] >= '0' && d[k] <= '9') {
                    k++;
                    digits++;
                }
                ok = digits >= 1 && digits <= 3 && k < n && d[k] == '"';
            }
            if (!ok)
                near = 0;
        }
    }
    PyBuffer_Release(&buf);
    return PyBool_FromLong(near);
}

/* surrogate_ref(xml) -> bool
 *
 * Whether the bytes hold a character reference to a lone surrogate (U+D800-U+DFFF):
 * read._SURROGATE_REF, in one pass --
 *   &#[xX]0*[dD][89a-fA-F][0-9a-fA-F]{2};   or   &#0*N;  with N 55296-57343 (5 digits)
 */
static int
hexdigit(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static PyObject *
surrogate_ref(PyObject *self, PyObject *args)
{
    Py_buffer buf;
    if (!PyArg_ParseTuple(args, "y*:surrogate_ref", &buf))
        return NULL;
    const char *d = (const char *)buf.buf;
    const Py_ssize_t n = buf.len;
    int found = 0;
    for (Py_ssize_t i = 0; !found && i + 1 < n; i++) {
        const char *amp = memchr(d + i, '&', (size_t)(n - 1 - i));
        if (amp == NULL)
            break;
        i = amp - d;
        if (d[i + 1] != '#')
            continue;
        Py_ssize_t k = i + 2;
        if (k < n && (d[k] == 'x' || d[k] == 'X')) {
            k++;
            while (k < n && d[k] == '0')
                k++;
            found = k + 4 < n && (d[k] == 'd' || d[k] == 'D') &&
                    ((d[k + 1] >= '8' && d[k + 1] <= '9') || (d[k + 1] >= 'a' && d[k + 1] <= 'f') ||
                     (d[k + 1] >= 'A' && d[k + 1] <= 'F')) &&
                    hexdigit(d[k + 2]) && hexdigit(d[k + 3]) && d[k + 4] == ';';
        } else {
            while (k < n && d[k] == '0')
                k++;
            long v = 0;
            Py_ssize_t digits = 0;
            while (k < n && digits < 6 && d[k] >= '0' && d[k] <= '9') {
                v = v * 10 + (d[k] - '0');
                k++;
                digits++;
            }
            found = digits == 5 && k < n && d[k] == ';' && v >= 55296 && v <= 57343;
        }
    }
    PyBuffer_Release(&buf);
    return PyBool_FromLong(found);
}

/* -- plain values (kpi_excel.spool) ---------------------------------------------------
 *
 * plain_rows(rows, row_type, decimal) and rows_from_plain(plain, row_type, decimal):
 * spool.plain_rows and spool.rows_from_plain, the same results and the same kinds of
 * errors. Values nest no deeper than PLAIN_DEPTH either way (spool._PLAIN_DEPTH).
 */
#define PLAIN_DEPTH 16

/* A value made plain (encode: a Decimal becomes its text in bytes; str, int, float,
 * bool and None stay; anything else is a TypeError) or read back (decode: bytes
 * become a Decimal; anything else stays). Tuples, lists and dicts are walked, no
 * deeper than PLAIN_DEPTH. */
static PyObject *
convert(PyObject *v, PyObject *dec, int depth, int encode)
{
    PyTypeObject *t = Py_TYPE(v);
    if (encode) {
        if (v == Py_None || t == &PyUnicode_Type || t == &PyLong_Type || t == &PyFloat_Type
            || t == &PyBool_Type) {
            Py_INCREF(v);
            return v;
        }
        if ((PyObject *)t == dec) {
            PyObject *text = PyObject_Str(v);
            if (text == NULL)
                return NULL;
            PyObject *out = PyUnicode_AsASCIIString(text);
            Py_DECREF(text);
            return out;
        }
    }
    else {
        if (t == &PyBytes_Type) {
            PyObject *text =
                PyUnicode_DecodeASCII(PyBytes_AS_STRING(v), PyBytes_GET_SIZE(v), NULL);
            if (text == NULL)
                return NULL;
            PyObject *out = PyObject_CallOneArg(dec, text);
            Py_DECREF(text);
            return out;
        }
        if (t != &PyTuple_Type && t != &PyList_Type && t != &PyDict_Type) {
            Py_INCREF(v);
            return v;
        }
    }
    if (depth >= PLAIN_DEPTH) {
        PyErr_SetString(PyExc_TypeError, "nested too deep");
        return NULL;
    }
    if (t == &PyTuple_Type) {
        Py_ssize_t n = PyTuple_GET_SIZE(v);
        PyObject *out = PyTuple_New(n);
        if (out == NULL)
            return NULL;
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *x = convert(PyTuple_GET_ITEM(v, i), dec, depth + 1, encode);
            if (x == NULL) {
                Py_DECREF(out);
                return NULL;
            }
            PyTuple_SET_ITEM(out, i, x);
        }
        return out;
    }
    if (t == &PyList_Type) {
        PyObject *out = PyList_New(0);
        if (out == NULL)
            return NULL;
        /* by index, the length read again each time: nothing here can change the
         * list, but a decimal type written in Python could */
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(v); i++) {
            PyObject *item = PyList_GET_ITEM(v, i);
            Py_INCREF(item);
            PyObject *x = convert(item, dec, depth + 1, encode);
            Py_DECREF(item);
            if (x == NULL || PyList_Append(out, x) < 0) {
                Py_XDECREF(x);
                Py_DECREF(out);
                return NULL;
            }
            Py_DECREF(x);
        }
        return out;
    }
    if (t == &PyDict_Type) {
        PyObject *items = PyDict_Items(v); /* a snapshot, for the same reason */
        if (items == NULL)
            return NULL;
        PyObject *out = PyDict_New();
        if (out == NULL) {
            Py_DECREF(items);
            return NULL;
        }
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(items); i++) {
            PyObject *pair = PyList_GET_ITEM(items, i);
            PyObject *k = convert(PyTuple_GET_ITEM(pair, 0), dec, depth + 1, encode);
            PyObject *x =
                k == NULL ? NULL : convert(PyTuple_GET_ITEM(pair, 1), dec, depth + 1, encode);
            if (x == NULL || PyDict_SetItem(out, k, x) < 0) {
                Py_XDECREF(k);
                Py_XDECREF(x);
                Py_DECREF(out);
                Py_DECREF(items);
                return NULL;
            }
            Py_DECREF(k);
            Py_DECREF(x);
        }
        Py_DECREF(items);
        return out;
    }
    PyErr_Format(PyExc_TypeError, "not a plain value: %s", t->tp_name);
    return NULL;
}

static PyObject *
plain_rows(PyObject *self, PyObject *args)
{
    PyObject *rows, *row_type, *dec;
    if (!PyArg_ParseTuple(args, "OOO:plain_rows", &rows, &row_type, &dec))
        return NULL;
    if (!PyList_CheckExact(rows)) {
        PyErr_SetString(PyExc_TypeError, "not a list");
        return NULL;
    }
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(rows); i++) {
        PyObject *row = PyList_GET_ITEM(rows, i);
        if ((PyObject *)Py_TYPE(row) != row_type || !PyTuple_Check(row)) {
            PyErr_SetString(PyExc_TypeError, "not a row of the part's type");
            Py_DECREF(out);
            return NULL;
        }
        Py_INCREF(row);
        Py_ssize_t n = PyTuple_GET_SIZE(row);
        PyObject *plain = PyTuple_New(n);
        for (Py_ssize_t j = 0; plain != NULL && j < n; j++) {
            PyObject *x = convert(PyTuple_GET_ITEM(row, j), dec, 1, 1);
            if (x == NULL)
                Py_CLEAR(plain);
            else
                PyTuple_SET_ITEM(plain, j, x);
        }
        Py_DECREF(row);
        if (plain == NULL || PyList_Append(out, plain) < 0) {
            Py_XDECREF(plain);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(plain);
    }
    return out;
}

static PyObject *
rows_from_plain(PyObject *self, PyObject *args)
{
    PyObject *plain, *row_type, *dec;
    if (!PyArg_ParseTuple(args, "OOO:rows_from_plain", &plain, &row_type, &dec))
        return NULL;
    if (!PyType_Check(row_type) || !PyType_IsSubtype((PyTypeObject *)row_type, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "the row type is not a tuple type");
        return NULL;
    }
    PyObject *it = PyObject_GetIter(plain);
    if (it == NULL)
        return NULL;
    PyObject *out = PyList_New(0);
    PyObject *row;
    while (out != NULL && (row = PyIter_Next(it)) != NULL) {
        PyObject *values = NULL, *made = NULL;
        PyObject *seq = PySequence_Tuple(row);
        if (seq != NULL) {
            values = convert(seq, dec, 0, 0);
            Py_DECREF(seq);
        }
        if (values != NULL) {
            PyObject *call = PyTuple_Pack(1, values);
            if (call != NULL) {
                made = PyTuple_Type.tp_new((PyTypeObject *)row_type, call, NULL);
                Py_DECREF(call);
            }
            Py_DECREF(values);
        }
        Py_DECREF(row);
        if (made == NULL || PyList_Append(out, made) < 0)
            Py_CLEAR(out);
        Py_XDECREF(made);
    }
    Py_DECREF(it);
    if (out != NULL && PyErr_Occurred())
        Py_CLEAR(out);
    return out;
}

/* score_rows(cls, heads, values, most, decimal, slow, other) -> list
 *
 * ledger.ScoreRow.rows's loop: for each (cell, kind, indicator, section) of `heads` (a
 * list of 4-tuples), its value values.get(cell) (`values` a dict), and the row
 * cls(cell, kind, indicator, section, value, text, number) made as tuple.__new__
 * makes it. A Decimal (exactly `decimal`) whose text is at most `most` characters of
 * "-.0123456789" has the text with trailing zeros (and then a trailing point) cut
 * after a point, and the float of its text; any other Decimal takes (text, number)
 * from slow(value), any other value from other(value).
 */
static int
fast_decimal_text(PyObject *t, Py_ssize_t most, PyObject **text, PyObject **number)
{
    Py_ssize_t n;
    const char *c = PyUnicode_AsUTF8AndSize(t, &n);
    if (c == NULL)
        return -1;
    if (n > most || n == 0)
        return 0;
    Py_ssize_t dot = -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        char ch = c[i];
        if (ch == '.')
            dot = i;
        else if (!(ch == '-' || (ch >= '0' && ch <= '9')))
            return 0;
    }
    Py_ssize_t end = n;
    if (dot >= 0) {
        while (end > 0 && c[end - 1] == '0')
            end--;
        if (end > 0 && c[end - 1] == '.')
            end--;
    }
    *text = end == n ? (Py_INCREF(t), t) : PyUnicode_FromStringAndSize(c, end);
    if (*text == NULL)
        return -1;
    *number = PyFloat_FromString(t);
    if (*number == NULL) {
        Py_CLEAR(*text);
        return -1;
    }
    return 1;
}

static PyObject *
score_rows(PyObject *self, PyObject *args)
{
    PyObject *cls, *heads, *values, *dec, *slow, *other;
    Py_ssize_t most;
    if (!PyArg_ParseTuple(args, "OO!O!nOOO:score_rows", &cls, &PyList_Type, &heads,
                          &PyDict_Type, &values, &most, &dec, &slow, &other))
        return NULL;
    if (!PyType_Check(cls) || !PyType_IsSubtype((PyTypeObject *)cls, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "the row type is not a tuple type");
        return NULL;
    }
    PyTypeObject *type = (PyTypeObject *)cls;
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(heads); i++) {
        PyObject *head = PyList_GET_ITEM(heads, i);
        if (!PyTuple_Check(head) || PyTuple_GET_SIZE(head) != 4) {
            PyErr_SetString(PyExc_TypeError, "a head is not (cell, kind, indicator, section)");
            goto fail;
        }
        Py_INCREF(head);
        PyObject *v = PyDict_GetItemWithError(values, PyTuple_GET_ITEM(head, 0));
        if (v == NULL && PyErr_Occurred()) {
            Py_DECREF(head);
            goto fail;
        }
        if (v == NULL)
            v = Py_None;
        Py_INCREF(v);
        PyObject *text = NULL, *number = NULL;
        int got = 0;
        if ((PyObject *)Py_TYPE(v) == dec) {
            PyObject *t = PyObject_Str(v);
            got = t == NULL ? -1 : fast_decimal_text(t, most, &text, &number);
            Py_XDECREF(t);
        }
        if (got == 0) {
            PyObject *pair = PyObject_CallOneArg((PyObject *)Py_TYPE(v) == dec ? slow : other, v);
            if (pair == NULL)
                got = -1;
            else if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) {
                PyErr_SetString(PyExc_TypeError, "not a (text, number) pair");
                got = -1;
            }
            else {
                text = PyTuple_GET_ITEM(pair, 0);
                number = PyTuple_GET_ITEM(pair, 1);
                Py_INCREF(text);
                Py_INCREF(number);
                got = 1;
            }
            Py_XDECREF(pair);
        }
        PyObject *row = got < 0 ? NULL : type->tp_alloc(type, 7);
        if (row == NULL) {
            Py_XDECREF(text);
            Py_XDECREF(number);
            Py_DECREF(v);
            Py_DECREF(head);
            goto fail;
        }
        for (int k = 0; k < 4; k++) {
            PyObject *x = PyTuple_GET_ITEM(head, k);
            Py_INCREF(x);
            PyTuple_SET_ITEM(row, k, x);
        }
        Py_DECREF(head);
        PyTuple_SET_ITEM(row, 4, v);
        PyTuple_SET_ITEM(row, 5, text);
        PyTuple_SET_ITEM(row, 6, number);
        if (PyList_Append(out, row) < 0) {
            Py_DECREF(row);
            goto fail;
        }
        Py_DECREF(row);
    }
    return out;
fail:
    Py_DECREF(out);
    return NULL;
}

/* read_filled(piece, env) -> (key, coordinate, raw, ends) or None
 *
 * fastread._read_filled (its Python reference) for one cell piece: the first hole
 * (<v>...</v>, <t>...</t>, <t xml:space="preserve">...</t>) with text in it, the
 * text checked (UTF-8, none of < & CR, no "xmlns=" or the main namespace), the piece
 * without the text looked up in `pieces` or read by `read_piece` (which may raise
 * `odd`: None), and the cell read with the text put back; None where the reference
 * answers None. env = (pieces, read_piece, odd, escaped_search, raw_type).
 */
static const struct {
    const char *open;
    Py_ssize_t olen;
    int is_value;
} filled_holes[3] = {
    {"<v>", 3, 1},
    {"<t>", 3, 0},
    {"<t xml:space=\"preserve\">", 24, 0},
};

static const char filled_main[] = "http://schemas.openxmlformats.org/spreadsheetml/2006/main";

static PyObject *
read_filled(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyBytes_Check(args[0]) || !PyTuple_Check(args[1])
        || PyTuple_GET_SIZE(args[1]) != 5 || !PyDict_Check(PyTuple_GET_ITEM(args[1], 0))
        || !PyType_Check(PyTuple_GET_ITEM(args[1], 4))) {
        PyErr_SetString(PyExc_TypeError, "read_filled(piece: bytes, env: tuple of 5)");
        return NULL;
    }
    PyObject *piece = args[0], *env = args[1];
    PyObject *pieces = PyTuple_GET_ITEM(env, 0), *read_piece = PyTuple_GET_ITEM(env, 1);
    PyObject *odd = PyTuple_GET_ITEM(env, 2), *escaped = PyTuple_GET_ITEM(env, 3);
    PyTypeObject *raw_type = (PyTypeObject *)PyTuple_GET_ITEM(env, 4);
    const char *data = PyBytes_AS_STRING(piece);
    const Py_ssize_t n = PyBytes_GET_SIZE(piece);
    for (int h = 0; h < 3; h++) {
        Py_ssize_t at = find_in(data, n, 0, filled_holes[h].open, filled_holes[h].olen);
        if (at < 0)
            continue;
        const Py_ssize_t start = at + filled_holes[h].olen;
        const char *close = filled_holes[h].is_value ? "</v>" : "</t>";
        const Py_ssize_t end = find_in(data, n, start, close, 4);
        if (end <= start)
            continue; /* no text to leave out */
        const int is_value = filled_holes[h].is_value;
        /* the text: plain (none of < & CR; ASCII, so the bytes tell), then UTF-8 */
        for (Py_ssize_t i = start; i < end; i++) {
            if (data[i] == '<' || data[i] == '&' || data[i] == '\r')
                Py_RETURN_NONE;
        }
        if (find_in(data + start, end - start, 0, "xmlns=", 6) >= 0
            || find_in(data + start, end - start, 0, filled_main, (Py_ssize_t)sizeof filled_main - 1) >= 0)
            Py_RETURN_NONE;
        PyObject *text = PyUnicode_DecodeUTF8(data + start, end - start, NULL);
        if (text == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError))
                return NULL;
            PyErr_Clear();
            Py_RETURN_NONE;
        }
        PyObject *stripped = PyBytes_FromStringAndSize(NULL, n - (end - start));
        if (stripped == NULL) {
            Py_DECREF(text);
            return NULL;
        }
        memcpy(PyBytes_AS_STRING(stripped), data, (size_t)start);
        memcpy(PyBytes_AS_STRING(stripped) + start, data + end, (size_t)(n - end));
        PyObject *got = PyDict_GetItemWithError(pieces, stripped);
        if (got != NULL && PyObject_IsTrue(got) == 1) {
            Py_INCREF(got);
        }
        else {
            if (PyErr_Occurred()) {
                Py_DECREF(stripped);
                Py_DECREF(text);
                return NULL;
            }
            got = PyObject_CallOneArg(read_piece, stripped);
        }
        Py_DECREF(stripped);
        if (got == NULL) {
            Py_DECREF(text);
            if (PyErr_ExceptionMatches(odd)) {
                PyErr_Clear();
                Py_RETURN_NONE;
            }
            return NULL;
        }
        PyObject *out = NULL;
        if (!PyTuple_Check(got) || PyTuple_GET_SIZE(got) != 4) {
            PyErr_SetString(PyExc_TypeError, "a piece's reading is (key, coordinate, raw, ends)");
            goto done;
        }
        PyObject *raw = PyTuple_GET_ITEM(got, 2);
        if (raw == Py_None) {
            out = Py_None;
            Py_INCREF(out);
            goto done;
        }
        if (!PyTuple_Check(raw) || PyTuple_GET_SIZE(raw) != 6) {
            PyErr_SetString(PyExc_TypeError, "a cell is (t, s, v, f, inline, refs)");
            goto done;
        }
        PyObject *empty = PyUnicode_New(0, 0);
        if (empty == NULL)
            goto done;
        int other = PyObject_RichCompareBool(PyTuple_GET_ITEM(raw, is_value ? 2 : 4), empty, Py_NE);
        Py_DECREF(empty);
        if (other < 0)
            goto done;
        if (other) {
            out = Py_None;
            Py_INCREF(out);
            goto done;
        }
        PyObject *t = PyTuple_GET_ITEM(raw, 0);
        int texty = !is_value;
        if (!texty) {
            texty = PyUnicode_Check(t) && (PyUnicode_CompareWithASCIIString(t, "s") == 0
                                           || PyUnicode_CompareWithASCIIString(t, "str") == 0);
        }
        if (texty) {
            PyObject *m = PyObject_CallOneArg(escaped, text);
            if (m == NULL)
                goto done;
            int hit = PyObject_IsTrue(m);
            Py_DECREF(m);
            if (hit < 0)
                goto done;
            if (hit) {
                out = Py_None;
                Py_INCREF(out);
                goto done;
            }
        }
        PyObject *fields = PyTuple_New(6);
        if (fields == NULL)
            goto done;
        for (int i = 0; i < 6; i++) {
            PyObject *v = PyTuple_GET_ITEM(raw, i);
            if ((is_value && i == 2) || (!is_value && i == 4))
                v = text;
            Py_INCREF(v);
            PyTuple_SET_ITEM(fields, i, v);
        }
        PyObject *targs = PyTuple_Pack(1, fields);
        Py_DECREF(fields);
        if (targs == NULL)
            goto done;
        PyObject *cell = PyTuple_Type.tp_new(raw_type, targs, NULL);
        Py_DECREF(targs);
        if (cell == NULL)
            goto done;
        out = PyTuple_Pack(4, PyTuple_GET_ITEM(got, 0), PyTuple_GET_ITEM(got, 1), cell,
                           PyTuple_GET_ITEM(got, 3));
        Py_DECREF(cell);
    done:
        Py_DECREF(got);
        Py_DECREF(text);
        return out;
    }
    Py_RETURN_NONE;
}

/* zip_directory(data, zipinfo) -> (start_dir, [ZipInfo, ...]) or None
 *
 * What zipfile.ZipFile._RealGetContents (Python 3.10/3.11) reads from `data`, for a
 * plainly written zip only: the end record is the file's last 22 bytes, with no
 * comment, no Zip64 locator before it, one disk, as many entries on it as in all, and
 * the directory just before it (nothing prepended: "concat" is 0); every directory
 * record lies inside the directory, which they fill exactly, as many as the end
 * record says; no record has an extra field (zipfile would decode it); every name is
 * ASCII without NUL (cp437 and UTF-8 read it alike, and nothing is cut off); no record
 * needs a newer version than zipfile reads (it would raise). Anything else gives None,
 * and the caller lets zipfile read the file. Each ZipInfo is made with `zipinfo`'s
 * __new__ and given the attributes _RealGetContents gives it; read.py enables this
 * only where ZipInfo has exactly those slots, and tests/test_zipdir.py compares both
 * readers on plain, unusual and damaged files.
 */
static inline unsigned
rd16(const unsigned char *p)
{
    return (unsigned)p[0] | ((unsigned)p[1] << 8);
}

static inline unsigned long
rd32(const unsigned char *p)
{
    return (unsigned long)p[0] | ((unsigned long)p[1] << 8) | ((unsigned long)p[2] << 16)
           | ((unsigned long)p[3] << 24);
}

#define ZIP_MAX_EXTRACT_VERSION 63
#define ZIP_INFO_FIELDS 20

static const char *zip_info_names[ZIP_INFO_FIELDS] = {
    "orig_filename", "filename", "date_time", "compress_type", "_compresslevel",
    "comment", "extra", "create_system", "create_version", "extract_version",
    "reserved", "flag_bits", "volume", "internal_attr", "external_attr",
    "header_offset", "CRC", "compress_size", "file_size", "_raw_time",
};
static PyObject *zip_info_keys[ZIP_INFO_FIELDS];

static PyObject *
zip_directory(PyObject *self, PyObject *args)
{
    Py_buffer buf;
    PyObject *zipinfo;
    if (!PyArg_ParseTuple(args, "y*O:zip_directory", &buf, &zipinfo))
        return NULL;
    if (!PyType_Check(zipinfo)) {
        PyBuffer_Release(&buf);
        PyErr_SetString(PyExc_TypeError, "zipinfo is a class");
        return NULL;
    }
    if (zip_info_keys[0] == NULL) {
        for (int i = 0; i < ZIP_INFO_FIELDS; i++) {
            zip_info_keys[i] = PyUnicode_InternFromString(zip_info_names[i]);
            if (zip_info_keys[i] == NULL) {
                PyBuffer_Release(&buf);
                return NULL;
            }
        }
    }
    const unsigned char *data = (const unsigned char *)buf.buf;
    const Py_ssize_t n = buf.len;
    PyObject *list = NULL, *empty_args = NULL, *empty_bytes = NULL, *out = NULL;
    if (n < 22 + 20)
        goto plain_none; /* zipfile's Zip64 look-back could not seek */
    const unsigned char *end = data + n - 22;
    if (memcmp(end, "PK\x05\x06", 4) != 0 || rd16(end + 20) != 0)
        goto plain_none;
    if (memcmp(end - 20, "PK\x06\x07", 4) == 0)
        goto plain_none;
    const unsigned disk = rd16(end + 4), disk_cd = rd16(end + 6);
    const unsigned here = rd16(end + 8), count = rd16(end + 10);
    const unsigned long size_cd = rd32(end + 12), offset_cd = rd32(end + 16);
    if (disk != 0 || disk_cd != 0 || here != count)
        goto plain_none;
    if ((unsigned long long)size_cd + offset_cd != (unsigned long long)(n - 22))
        goto plain_none;
    /* every record inside the directory, filling it, none with an extra field */
    {
        unsigned long pos = 0;
        unsigned records = 0;
        const unsigned char *cd = data + offset_cd;
        while (pos < size_cd) {
            if (size_cd - pos < 46)
                goto plain_none;
            const unsigned char *r = cd + pos;
            if (memcmp(r, "PK\x01\x02", 4) != 0)
                goto plain_none;
            const unsigned long fn = rd16(r + 28), ex = rd16(r + 30), cm = rd16(r + 32);
            if (ex != 0 || r[6] > ZIP_MAX_EXTRACT_VERSION)
                goto plain_none;
            if (size_cd - pos - 46 < fn + cm)
                goto plain_none;
            for (unsigned long i = 0; i < fn; i++) {
                if (r[46 + i] == 0 || r[46 + i] >= 0x80)
                    goto plain_none;
            }
            pos += 46 + fn + cm;
            records++;
        }
        if (pos != size_cd || records != count)
            goto plain_none;
    }
    list = PyList_New(0);
    empty_args = PyTuple_New(0);
    empty_bytes = PyBytes_FromStringAndSize(NULL, 0);
    if (list == NULL || empty_args == NULL || empty_bytes == NULL)
        goto fail;
    {
        unsigned long pos = 0;
        const unsigned char *cd = data + offset_cd;
        PyTypeObject *type = (PyTypeObject *)zipinfo;
        while (pos < size_cd) {
            const unsigned char *r = cd + pos;
            const unsigned long fn = rd16(r + 28), cm = rd16(r + 32);
            const unsigned t = rd16(r + 12), d = rd16(r + 14);
            PyObject *v[ZIP_INFO_FIELDS] = {NULL};
            PyObject *name = PyUnicode_DecodeASCII((const char *)r + 46, (Py_ssize_t)fn, NULL);
            v[0] = name;
            Py_XINCREF(name);
            v[1] = name;
            v[2] = Py_BuildValue("(iiiiii)", (int)(d >> 9) + 1980, (int)((d >> 5) & 0xF),
                                 (int)(d & 0x1F), (int)(t >> 11), (int)((t >> 5) & 0x3F),
                                 (int)(t & 0x1F) * 2);
            v[3] = PyLong_FromUnsignedLong(rd16(r + 10));
            Py_INCREF(Py_None);
            v[4] = Py_None;
            v[5] = PyBytes_FromStringAndSize((const char *)r + 46 + fn, (Py_ssize_t)cm);
            Py_INCREF(empty_bytes);
            v[6] = empty_bytes;
            v[7] = PyLong_FromUnsignedLong(r[5]);
            v[8] = PyLong_FromUnsignedLong(r[4]);
            v[9] = PyLong_FromUnsignedLong(r[6]);
            v[10] = PyLong_FromUnsignedLong(r[7]);
            v[11] = PyLong_FromUnsignedLong(rd16(r + 8));
            v[12] = PyLong_FromUnsignedLong(rd16(r + 34));
            v[13] = PyLong_FromUnsignedLong(rd16(r + 36));
            v[14] = PyLong_FromUnsignedLong(rd32(r + 38));
            v[15] = PyLong_FromUnsignedLong(rd32(r + 42));
            v[16] = PyLong_FromUnsignedLong(rd32(r + 16));
            v[17] = PyLong_FromUnsignedLong(rd32(r + 20));
            v[18] = PyLong_FromUnsignedLong(rd32(r + 24));
            v[19] = PyLong_FromUnsignedLong(t);
            PyObject *info = NULL;
            int ok = 1;
            for (int i = 0; i < ZIP_INFO_FIELDS; i++) {
                if (v[i] == NULL)
                    ok = 0;
            }
            if (ok) {
                info = type->tp_new(type, empty_args, NULL);
                ok = info != NULL;
            }
            for (int i = 0; ok && i < ZIP_INFO_FIELDS; i++) {
                if (PyObject_SetAttr(info, zip_info_keys[i], v[i]) < 0)
                    ok = 0;
            }
            for (int i = 0; i < ZIP_INFO_FIELDS; i++)
                Py_XDECREF(v[i]);
            if (ok && PyList_Append(list, info) < 0)
                ok = 0;
            Py_XDECREF(info);
            if (!ok)
                goto fail;
            pos += 46 + fn + cm;
        }
    }
    out = Py_BuildValue("(kO)", offset_cd, list);
fail:
    Py_XDECREF(list);
    Py_XDECREF(empty_args);
    Py_XDECREF(empty_bytes);
    PyBuffer_Release(&buf);
    return out;
plain_none:
    PyBuffer_Release(&buf);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"surrogate_ref", surrogate_ref, METH_VARARGS,
     "Whether the bytes hold a character reference to a lone surrogate (read._SURROGATE_REF)."},
    {"cell_tags_near", cell_tags_near, METH_VARARGS,
     "Whether every cell tag is <c r=\"A1\" within Z999, none prefixed (read._used_area)."},
    {"cut_pieces", cut_pieces, METH_VARARGS,
     "data.split(b'<c r=\"'), reusing the pieces that equal the previous list's."},
    {"scan_pieces", scan_pieces, METH_VARARGS,
     "fastread._scan's loop over a sheet's cell pieces."},
    {"sheet_records", sheet_records, METH_VARARGS,
     "fastread._Views.sheet_cells's loop over a scan's cells."},
    {"xml_views", xml_views, METH_VARARGS, "fastread._Views.xml_cells's loop."},
    {"plain_rows", plain_rows, METH_VARARGS, "spool.plain_rows: rows as plain values."},
    {"score_rows", score_rows, METH_VARARGS, "ledger.ScoreRow.rows's loop."},
    {"read_filled", (PyCFunction)(void (*)(void))read_filled, METH_FASTCALL,
     "fastread._read_filled: a cell piece read from its form without the value or text."},
    {"zip_directory", zip_directory, METH_VARARGS,
     "What zipfile.ZipFile._RealGetContents reads, for a plainly written zip (else None)."},
    {"rows_from_plain", rows_from_plain, METH_VARARGS,
     "spool.rows_from_plain: the rows plain_rows made plain values of."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "kpi_excel._speedups",
    "The fast reader's per-cell loops in C (kpi_excel.fastread keeps them in Python too).",
    -1, methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModule_Create(&module);
}
