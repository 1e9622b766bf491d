/* _prunekit: the thin CPython layer over libprunekit. It takes buffers and plain arguments that
 * the pure-Python package prunekit has already shaped, calls one pk_ function with the GIL
 * released, and maps the status to an exception carrying the library's message. No pruning
 * logic lives here. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <prunekit.h>

static PyObject *PruneKitError;

/* pk_status -> exception, with pk_last_error()'s message: the one place statuses become exception
 * types. The message ends with the status in words and its name ("... (invalid shape:
 * PK_ERROR_INVALID_SHAPE)"). */
static PyObject *raise_status(pk_status status) {
    PyObject *type = PruneKitError;
    const char *words = "error";
    switch (status) {
    case PK_ERROR_NULL_POINTER: type = PyExc_ValueError; words = "missing argument"; break;
    case PK_ERROR_INVALID_ARGUMENT: type = PyExc_ValueError; words = "invalid argument"; break;
    case PK_ERROR_INVALID_SHAPE: type = PyExc_ValueError; words = "invalid shape"; break;
    case PK_ERROR_NON_FINITE: type = PyExc_ValueError; words = "non-finite value"; break;
    case PK_ERROR_CORRUPT_DATA: type = PyExc_ValueError; words = "corrupt data"; break;
    case PK_ERROR_BUFFER_TOO_SMALL: type = PyExc_ValueError; words = "buffer too small"; break;
    case PK_ERROR_UNSUPPORTED_DTYPE: type = PyExc_TypeError; words = "unsupported dtype"; break;
    case PK_ERROR_OUT_OF_MEMORY: type = PyExc_MemoryError; words = "out of memory"; break;
    case PK_ERROR_NUMERIC: type = PyExc_ArithmeticError; words = "numeric failure"; break;
    case PK_ERROR_STRUCT_SIZE: words = "option struct size"; break;
    case PK_ERROR_INTERNAL: words = "internal error"; break;
    case PK_ERROR_CANCELLED: words = "cancelled"; break;
    default: break;
    }
    PyErr_Format(type, "%s (%s: %s)", pk_last_error(), words, pk_status_string(status));
    return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* Arguments. Every function takes keyword arguments; an option struct's field that is absent or
 * None keeps the value its pk_*_init gives it. A matrix is a 2-D buffer (a numpy array), a
 * criterion and a selection are dicts of their struct's fields; each has one converter (O&). */

typedef struct option_field {
    const char *name;
    char type; /* 'i' int32, 'L' int64, 'K' uint64, 'd' double */
    size_t offset;
} option_field;

#define FIELD(type, member, code) {#member, code, offsetof(type, member)}

/* Sets one field from a value (not None); on failure a ValueError (out of range) or TypeError
 * naming the field. */
static int set_field(PyObject *value, const option_field *f, void *target) {
    char *at = (char *)target + f->offset;
    int ok = 1;
    if (f->type == 'd') {
        double v = PyFloat_AsDouble(value);
        if ((ok = !(v == -1.0 && PyErr_Occurred()))) memcpy(at, &v, sizeof v);
    } else if (f->type == 'K') {
        PyObject *index = PyNumber_Index(value); /* numpy integers too */
        uint64_t v = index ? (uint64_t)PyLong_AsUnsignedLongLong(index) : UINT64_MAX;
        Py_XDECREF(index);
        if ((ok = !(v == UINT64_MAX && PyErr_Occurred()))) memcpy(at, &v, sizeof v);
    } else {
        long long v = PyLong_AsLongLong(value);
        ok = !(v == -1 && PyErr_Occurred());
        if (ok && f->type == 'i' && (v < INT32_MIN || v > INT32_MAX)) {
            PyErr_SetString(PyExc_OverflowError, "does not fit in 32 bits");
            ok = 0;
        }
        int32_t i = (int32_t)v;
        int64_t l = (int64_t)v;
        if (ok) f->type == 'i' ? memcpy(at, &i, sizeof i) : memcpy(at, &l, sizeof l);
    }
    if (!ok && PyErr_ExceptionMatches(PyExc_OverflowError)) {
        PyErr_Clear();
        PyErr_Format(PyExc_ValueError, "%s = %R is out of range", f->name, value);
    } else if (!ok && PyErr_ExceptionMatches(PyExc_TypeError)) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "%s: expected %s, got %s", f->name, f->type == 'd' ? "a number" : "an integer",
                     Py_TYPE(value)->tp_name);
    }
    return ok;
}

/* Sets the fields of *target that `kwargs` names (None: not given) and returns a new dict of the
 * other keyword arguments (NULL with an exception on a value that does not convert). */
static PyObject *take_options(PyObject *kwargs, const option_field *fields, void *target) {
    PyObject *rest = kwargs ? PyDict_Copy(kwargs) : PyDict_New();
    for (const option_field *f = fields; rest && f->name; f++) {
        PyObject *value = PyDict_GetItemString(rest, f->name);
        if (value && ((value != Py_None && !set_field(value, f, target)) || PyDict_DelItemString(rest, f->name) < 0))
            Py_CLEAR(rest);
    }
    return rest;
}

/* A dict argument (`what` names it in errors): the fields it names into *target (None: not given)
 * and, for each of `keys` (NULL-ended), its value (borrowed, NULL when absent) into values[i].
 * Any other key is a TypeError. */
static int take_dict(PyObject *object, const char *what, const option_field *fields, void *target,
                     const char *const *keys, PyObject **values) {
    if (!PyDict_Check(object)) {
        PyErr_Format(PyExc_TypeError, "%s: expected a dict, got %s", what, Py_TYPE(object)->tp_name);
        return 0;
    }
    PyObject *rest = take_options(object, fields, target);
    int ok = rest != NULL;
    for (int i = 0; ok && keys && keys[i]; i++)
        if ((values[i] = PyDict_GetItemString(object, keys[i]))) ok = PyDict_DelItemString(rest, keys[i]) == 0;
    if (ok && PyDict_GET_SIZE(rest) != 0) {
        PyObject *unknown = PyDict_Keys(rest);
        if (unknown) PyErr_Format(PyExc_TypeError, "%s: unknown keys %R", what, unknown);
        Py_XDECREF(unknown);
        ok = 0;
    }
    Py_XDECREF(rest);
    return ok;
}

/* A buffer's struct format without its byte-order prefix when that order is the host's ('@',
 * '=', or '<' / '>' matching it: a memory-mapped '<f4' array is native on a little-endian host). */
static const char *native_format(const char *format) {
    const uint16_t one = 1;
    char native = *(const uint8_t *)&one ? '<' : '>';
    return format[0] == '@' || format[0] == '=' || format[0] == native ? format + 1 : format;
}

/* A pk_matrix over a 2-D buffer whose rows are contiguous and aligned (any row stride >= cols):
 * format f, d, e or H (uint16, the bit patterns prunekit hands bfloat16 over as). */
typedef struct matrix_arg {
    Py_buffer view;
    pk_matrix matrix;
} matrix_arg;

/* Releases the buffers given, up to a NULL (one never taken is zeroed: nothing to release). A
 * matrix_arg or hessian_arg goes as &arg.view. */
static void release(Py_buffer *first, ...) {
    va_list va;
    va_start(va, first);
    for (Py_buffer *b = first; b; b = va_arg(va, Py_buffer *)) PyBuffer_Release(b);
    va_end(va);
}

static int matrix_take(PyObject *object, matrix_arg *a, int flags) {
    if (!object) { /* cleanup after a later argument failed */
        PyBuffer_Release(&a->view);
        return 1;
    }
    memset(a, 0, sizeof(*a));
    if (object == Py_None) {
        PyErr_SetString(PyExc_TypeError, "expected a 2-D array, got None");
        return 0;
    }
    if (PyObject_GetBuffer(object, &a->view, flags | PyBUF_STRIDES | PyBUF_FORMAT) != 0) return 0;
    const Py_buffer *v = &a->view;
    const char *format = native_format(v->format);
    int dtype = -1;
    if (format[0] && !format[1])
        dtype = format[0] == 'f' ? PK_DTYPE_FLOAT32 : format[0] == 'd' ? PK_DTYPE_FLOAT64
              : format[0] == 'e' ? PK_DTYPE_FLOAT16 : format[0] == 'H' ? PK_DTYPE_BFLOAT16 : -1;
    if (v->ndim != 2 || dtype < 0) {
        PyErr_Format(PyExc_TypeError, "expected a 2-D float32, float64, float16 or bfloat16 array, got %d-D '%s'",
                     v->ndim, v->format);
        PyBuffer_Release(&a->view);
        return 0;
    }
    Py_ssize_t item = v->itemsize, rows = v->shape[0], cols = v->shape[1];
    Py_ssize_t row_bytes = rows > 1 ? v->strides[0] : cols * item;
    if ((cols > 1 && v->strides[1] != item) || row_bytes % item || row_bytes / item < cols ||
        (uintptr_t)v->buf % (uintptr_t)item) {
        PyErr_Format(PyExc_ValueError, "rows must be contiguous and aligned (strides %zd, %zd)", v->strides[0],
                     v->strides[1]);
        PyBuffer_Release(&a->view);
        return 0;
    }
    pk_matrix m = {v->buf, rows, cols, row_bytes / item, dtype, 0};
    a->matrix = m;
    return Py_CLEANUP_SUPPORTED;
}

static int to_matrix(PyObject *object, void *a) { return matrix_take(object, (matrix_arg *)a, 0); }
static int to_writable_matrix(PyObject *object, void *a) { return matrix_take(object, (matrix_arg *)a, PyBUF_WRITABLE); }

/* n zeroed slots of `size` bytes (at least one), or NULL with MemoryError. */
static void *slots(Py_ssize_t n, size_t size) {
    void *p = PyMem_Calloc((size_t)(n > 0 ? n : 1), size);
    if (!p) PyErr_NoMemory();
    return p;
}

/* A criterion from a dict {kind, seed, features, gradient} (None = magnitude). features: a float32
 * or float64 vector (rounded to float32 here, to nearest), or a Stats, whose standard deviations
 * STADE takes and whose L2 norms every other kind takes (read through the object's own methods,
 * so a Stats view such as PermutedStats gives its own). gradient: a matrix. */
typedef struct criterion_arg {
    pk_criterion criterion;
    matrix_arg gradient;
    Py_buffer features;
    PyObject *read;  /* a Stats' values: a bytearray of float64, rounded in place to float32 */
    float *rounded;  /* a float64 vector's values rounded to float32 (PyMem) */
} criterion_arg;

static const option_field criterion_fields[] = {
    FIELD(pk_criterion, kind, 'i'), FIELD(pk_criterion, seed, 'K'), {NULL, 0, 0}};

static PyTypeObject StatsType;

static void criterion_release(criterion_arg *c) {
    release(&c->gradient.view, &c->features, NULL);
    Py_CLEAR(c->read);
    PyMem_Free(c->rounded);
    c->rounded = NULL;
}

/* Rounds n float64 values to float32, to nearest. `to` may be `from` itself: value i lands at byte
 * 4i once it has been read from byte 8i (memcpy keeps the accesses in that order). */
static void round_to_float32(const void *from, void *to, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) {
        double d;
        memcpy(&d, (const char *)from + 8 * i, sizeof d);
        float f = (float)d;
        memcpy((char *)to + 4 * i, &f, sizeof f);
    }
}

/* A Stats' feature values through its _std / _l2_norm method, in one float64 bytearray (a Python
 * object, so a reader that keeps a view of it keeps it alive) that is then rounded in place. */
static int criterion_stats_features(PyObject *stats, criterion_arg *c) {
    PyObject *count = PyObject_GetAttrString(stats, "features");
    long long n = count ? PyLong_AsLongLong(count) : -1;
    Py_XDECREF(count);
    if (n < 0 || PyErr_Occurred()) return 0;
    c->read = PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)n * 8);
    PyObject *raw = c->read ? PyMemoryView_FromObject(c->read) : NULL;
    PyObject *view = raw ? PyObject_CallMethod(raw, "cast", "s", "d") : NULL;
    PyObject *done = view ? PyObject_CallMethod(stats, c->criterion.kind == PK_CRITERION_STADE ? "_std" : "_l2_norm",
                                                "O", view)
                          : NULL;
    Py_XDECREF(done);
    Py_XDECREF(view);
    Py_XDECREF(raw);
    if (!done) return 0;
    char *values = PyByteArray_AS_STRING(c->read);
    round_to_float32(values, values, (Py_ssize_t)n);
    c->criterion.feature_values = (const float *)values;
    c->criterion.feature_count = (int64_t)n;
    return 1;
}

static int criterion_vector_features(PyObject *object, criterion_arg *c) {
    if (PyObject_GetBuffer(object, &c->features, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) != 0) return 0;
    const Py_buffer *v = &c->features;
    const char *format = native_format(v->format);
    if (v->ndim != 1) {
        PyErr_Format(PyExc_ValueError, "features: expected a 1-D vector, got %d dimensions", v->ndim);
        return 0;
    }
    Py_ssize_t n = v->shape[0];
    c->criterion.feature_count = (int64_t)n;
    if (!strcmp(format, "f")) {
        c->criterion.feature_values = (const float *)v->buf;
        return 1;
    }
    if (strcmp(format, "d")) {
        PyErr_Format(PyExc_TypeError, "features: expected float32 or float64 values, got '%s'", v->format);
        return 0;
    }
    if (!(c->rounded = (float *)slots(n, sizeof(float)))) return 0;
    round_to_float32(v->buf, c->rounded, n);
    c->criterion.feature_values = c->rounded;
    return 1;
}

static int to_criterion(PyObject *object, void *target) {
    criterion_arg *c = (criterion_arg *)target;
    if (!object) {
        criterion_release(c);
        return 1;
    }
    memset(c, 0, sizeof(*c));
    pk_criterion_init(&c->criterion);
    if (object == Py_None) return Py_CLEANUP_SUPPORTED;
    static const char *const keys[] = {"features", "gradient", NULL};
    PyObject *values[2] = {NULL, NULL};
    int ok = take_dict(object, "criterion", criterion_fields, &c->criterion, keys, values);
    PyObject *features = values[0], *gradient = values[1];
    if (ok && features && features != Py_None)
        ok = PyObject_TypeCheck(features, &StatsType) ? criterion_stats_features(features, c)
                                                      : criterion_vector_features(features, c);
    if (ok && gradient && gradient != Py_None) {
        ok = to_matrix(gradient, &c->gradient) != 0;
        if (ok) c->criterion.gradient = &c->gradient.matrix;
    }
    if (!ok) {
        criterion_release(c);
        return 0;
    }
    return Py_CLEANUP_SUPPORTED;
}

/* Lists: matrices (one per layer or member) and criteria (one per layer), as O& converters. */
typedef struct matrix_list {
    Py_ssize_t count;
    matrix_arg *items;
    pk_matrix *plain; /* NULL for None */
} matrix_list;

static void matrix_list_release(matrix_list *l) {
    for (Py_ssize_t i = 0; i < l->count; i++) PyBuffer_Release(&l->items[i].view);
    PyMem_Free(l->items);
    PyMem_Free(l->plain);
    memset(l, 0, sizeof(*l));
}

static int matrix_list_take(PyObject *object, matrix_list *l, int flags) {
    if (!object) {
        matrix_list_release(l);
        return 1;
    }
    memset(l, 0, sizeof(*l));
    if (object == Py_None) return Py_CLEANUP_SUPPORTED;
    if (!PyList_Check(object)) {
        PyErr_Format(PyExc_TypeError, "expected a list of matrices, got %s", Py_TYPE(object)->tp_name);
        return 0;
    }
    Py_ssize_t n = PyList_GET_SIZE(object);
    if (!(l->items = (matrix_arg *)slots(n, sizeof(matrix_arg))) || !(l->plain = (pk_matrix *)slots(n, sizeof(pk_matrix)))) {
        matrix_list_release(l);
        return 0;
    }
    for (; l->count < n; l->count++) {
        if (!matrix_take(PyList_GET_ITEM(object, l->count), &l->items[l->count], flags)) {
            matrix_list_release(l);
            return 0;
        }
        l->plain[l->count] = l->items[l->count].matrix;
    }
    return Py_CLEANUP_SUPPORTED;
}

static int to_matrices(PyObject *object, void *l) { return matrix_list_take(object, (matrix_list *)l, 0); }
static int to_writable_matrices(PyObject *object, void *l) { return matrix_list_take(object, (matrix_list *)l, PyBUF_WRITABLE); }

typedef struct criterion_list {
    Py_ssize_t count;
    criterion_arg *items;
    const pk_criterion **plain;
} criterion_list;

static void criterion_list_release(criterion_list *l) {
    for (Py_ssize_t i = 0; i < l->count; i++) criterion_release(&l->items[i]);
    PyMem_Free(l->items);
    PyMem_Free((void *)l->plain);
    memset(l, 0, sizeof(*l));
}

static int to_criteria(PyObject *object, void *target) {
    criterion_list *l = (criterion_list *)target;
    if (!object) {
        criterion_list_release(l);
        return 1;
    }
    memset(l, 0, sizeof(*l));
    if (!PyList_Check(object)) {
        PyErr_Format(PyExc_TypeError, "expected a list of criteria, got %s", Py_TYPE(object)->tp_name);
        return 0;
    }
    Py_ssize_t n = PyList_GET_SIZE(object);
    if (!(l->items = (criterion_arg *)slots(n, sizeof(criterion_arg))) ||
        !(l->plain = (const pk_criterion **)slots(n, sizeof(pk_criterion *)))) {
        criterion_list_release(l);
        return 0;
    }
    for (; l->count < n; l->count++) {
        if (!to_criterion(PyList_GET_ITEM(object, l->count), &l->items[l->count])) {
            criterion_list_release(l);
            return 0;
        }
        l->plain[l->count] = &l->items[l->count].criterion;
    }
    return Py_CLEANUP_SUPPORTED;
}

/* A selection from a dict of pk_selection's fields (None = the defaults). */
static const option_field selection_fields[] = {
    FIELD(pk_selection, scope, 'i'), FIELD(pk_selection, num_threads, 'i'), FIELD(pk_selection, sparsity, 'd'),
    FIELD(pk_selection, n, 'i'), FIELD(pk_selection, m, 'i'), {NULL, 0, 0}};

/* Sets *target's fields from a dict that holds nothing else (None: no field given). */
static int fields_from_dict(PyObject *object, const option_field *fields, void *target, const char *what) {
    return object == Py_None || take_dict(object, what, fields, target, NULL, NULL);
}

static int to_selection(PyObject *object, void *target) {
    pk_selection_init((pk_selection *)target);
    return fields_from_dict(object, selection_fields, target, "selection");
}

/* PyArg_ParseTupleAndKeywords on what is left once the option fields are taken into *options. */
static int parse_with_options(PyObject *args, PyObject *kwargs, const option_field *fields, void *options,
                              const char *format, char **kwlist, ...) {
    PyObject *rest = take_options(kwargs, fields, options);
    if (!rest) return 0;
    va_list va;
    va_start(va, kwlist);
    int ok = PyArg_VaParseTupleAndKeywords(args, rest, format, kwlist, va);
    va_end(va);
    Py_DECREF(rest);
    return ok;
}

/* A Hessian: a square C-contiguous float64 matrix (its size goes to the library, which checks it
 * against the weights). */
typedef struct hessian_arg {
    Py_buffer view;
    int64_t size;
} hessian_arg;

static int to_hessian(PyObject *object, void *target) {
    hessian_arg *h = (hessian_arg *)target;
    if (!object) {
        PyBuffer_Release(&h->view);
        return 1;
    }
    memset(h, 0, sizeof(*h));
    if (PyObject_GetBuffer(object, &h->view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) != 0) return 0;
    const Py_buffer *v = &h->view;
    const char *format = native_format(v->format);
    if (v->ndim != 2 || v->shape[0] != v->shape[1] || strcmp(format, "d")) {
        PyErr_Format(PyExc_ValueError, "hessian: expected a square float64 matrix, got %d-D '%s'%s", v->ndim, v->format,
                     v->ndim == 2 ? " of another shape" : "");
        PyBuffer_Release(&h->view);
        return 0;
    }
    h->size = (int64_t)v->shape[0];
    return Py_CLEANUP_SUPPORTED;
}

/* Runs one library call with the GIL released (no Python API inside). */
#define UNLOCKED(statement) \
    do { \
        Py_BEGIN_ALLOW_THREADS statement; \
        Py_END_ALLOW_THREADS \
    } while (0)

/* Runs `call` with the GIL released and sets `result` to None or the exception of its status. */
#define CALL_INTO(result, call) \
    do { \
        pk_status status_; \
        UNLOCKED(status_ = (call)); \
        result = none_or_raise(status_); \
    } while (0)

/* The result of a call that returns nothing but its status. */
static PyObject *none_or_raise(pk_status status) { return status == PK_OK ? Py_NewRef(Py_None) : raise_status(status); }

/* Checks that a buffer holds at least `bytes` bytes: the library cannot see a buffer's length. */
static int check_size(const Py_buffer *b, Py_ssize_t bytes, const char *name) {
    if (b->len < bytes) {
        PyErr_Format(PyExc_ValueError, "%s buffer has %zd bytes, %zd needed", name, b->len, bytes);
        return 0;
    }
    return 1;
}

/* score(weights, criterion, scores_out): pk_score. */
static PyObject *py_score(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"weights", "criterion", "scores_out", NULL};
    matrix_arg w;
    criterion_arg c;
    Py_buffer out = {0};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&O&w*", kwlist, to_matrix, &w, to_criterion, &c, &out)) return NULL;
    PyObject *result = NULL;
    if (check_size(&out, (Py_ssize_t)(w.matrix.rows * w.matrix.cols * 4), "scores"))
        CALL_INTO(result, pk_score(&w.matrix, &c.criterion, (float *)out.buf));
    PyBuffer_Release(&w.view);
    criterion_release(&c);
    PyBuffer_Release(&out);
    return result;
}

/* mask(weights, criterion, selection, mask_out): pk_mask. */
static PyObject *py_mask(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"weights", "criterion", "selection", "mask_out", NULL};
    matrix_arg w;
    criterion_arg c;
    pk_selection sel;
    Py_buffer out = {0};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&O&O&w*", kwlist, to_matrix, &w, to_criterion, &c, to_selection,
                                     &sel, &out))
        return NULL;
    PyObject *result = NULL;
    if (check_size(&out, (Py_ssize_t)(w.matrix.rows * w.matrix.cols), "mask"))
        CALL_INTO(result, pk_mask(&w.matrix, &c.criterion, &sel, (uint8_t *)out.buf));
    PyBuffer_Release(&w.view);
    criterion_release(&c);
    PyBuffer_Release(&out);
    return result;
}

/* mask_layers(weights [matrix], criteria [criterion], selection, masks_out [writable buffer]):
 * pk_mask_layers. The three lists have one entry per layer. */
static PyObject *py_mask_layers(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"weights", "criteria", "selection", "masks_out", NULL};
    matrix_list w;
    criterion_list c;
    pk_selection sel;
    PyObject *outs;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&O&O&O!", kwlist, to_matrices, &w, to_criteria, &c, to_selection,
                                     &sel, &PyList_Type, &outs))
        return NULL;
    Py_ssize_t count = w.count;
    Py_buffer *masks = (Py_buffer *)slots(count, sizeof(Py_buffer));
    uint8_t **mask_ptrs = masks ? (uint8_t **)slots(count, sizeof(uint8_t *)) : NULL;
    PyObject *result = NULL;
    if (mask_ptrs && (c.count != count || PyList_GET_SIZE(outs) != count))
        PyErr_SetString(PyExc_ValueError, "one criterion and one mask per layer are needed");
    for (Py_ssize_t i = 0; mask_ptrs && !PyErr_Occurred() && i < count; i++)
        if (PyObject_GetBuffer(PyList_GET_ITEM(outs, i), &masks[i], PyBUF_WRITABLE) == 0 &&
            check_size(&masks[i], (Py_ssize_t)(w.plain[i].rows * w.plain[i].cols), "mask"))
            mask_ptrs[i] = (uint8_t *)masks[i].buf;
    if (mask_ptrs && !PyErr_Occurred())
        CALL_INTO(result, pk_mask_layers(w.plain, c.plain, (int64_t)count, &sel, mask_ptrs));
    for (Py_ssize_t i = 0; masks && i < count; i++) PyBuffer_Release(&masks[i]);
    PyMem_Free(masks);
    PyMem_Free(mask_ptrs);
    matrix_list_release(&w);
    criterion_list_release(&c);
    return result;
}

/* apply_mask(weights (writable), mask): pk_apply_mask. */
static PyObject *py_apply_mask(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"weights", "mask", NULL};
    matrix_arg w;
    Py_buffer mask = {0};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&y*", kwlist, to_writable_matrix, &w, &mask)) return NULL;
    PyObject *result = NULL;
    if (check_size(&mask, (Py_ssize_t)(w.matrix.rows * w.matrix.cols), "mask"))
        CALL_INTO(result, pk_apply_mask(&w.matrix, (const uint8_t *)mask.buf));
    release(&w.view, &mask, NULL);
    return result;
}

/* mask_sparsity(mask, rows, cols, row_sparsity_out) -> overall: pk_mask_sparsity. */
static PyObject *py_mask_sparsity(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"mask", "rows", "cols", "row_sparsity_out", NULL};
    Py_buffer mask = {0}, out = {0};
    long long rows, cols;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*LLw*", kwlist, &mask, &rows, &cols, &out)) return NULL;
    PyObject *result = NULL;
    if (check_size(&mask, (Py_ssize_t)(rows * cols), "mask") && check_size(&out, (Py_ssize_t)(rows * 8), "rows")) {
        double overall = 0;
        pk_status status;
        UNLOCKED(status = pk_mask_sparsity((const uint8_t *)mask.buf, rows, cols, (double *)out.buf, &overall));
        result = status == PK_OK ? PyFloat_FromDouble(overall) : raise_status(status);
    }
    release(&mask, &out, NULL);
    return result;
}

/* Reconstruction: sparsegpt, reconstruct, prune_columns take the fields of
 * pk_reconstruction_options as keywords (absent or None: pk_reconstruction_options_init's). */
static const option_field reconstruction_fields[] = {
    FIELD(pk_reconstruction_options, scope, 'i'), FIELD(pk_reconstruction_options, precision, 'i'),
    FIELD(pk_reconstruction_options, sparsity, 'd'), FIELD(pk_reconstruction_options, n, 'i'),
    FIELD(pk_reconstruction_options, m, 'i'), FIELD(pk_reconstruction_options, block_size, 'L'),
    FIELD(pk_reconstruction_options, dampening, 'd'), FIELD(pk_reconstruction_options, max_dampening_retries, 'i'),
    FIELD(pk_reconstruction_options, num_threads, 'i'), {NULL, 0, 0}};

/* sparsegpt(weights, hessian, mask_out, weights_out, **options): pk_sparsegpt. */
static PyObject *py_sparsegpt(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"weights", "hessian", "mask_out", "weights_out", NULL};
    pk_reconstruction_options o;
    pk_reconstruction_options_init(&o);
    matrix_arg w, out;
    hessian_arg h;
    Py_buffer mask = {0};
    if (!parse_with_options(args, kwargs, reconstruction_fields, &o, "O&O&w*O&", kwlist, to_matrix, &w, to_hessian, &h,
                            &mask, to_writable_matrix, &out))
        return NULL;
    PyObject *result = NULL;
    if (check_size(&mask, (Py_ssize_t)(w.matrix.rows * w.matrix.cols), "mask"))
        CALL_INTO(result, pk_sparsegpt(&w.matrix, (const double *)h.view.buf, h.size, &o, (uint8_t *)mask.buf, &out.matrix));
    release(&w.view, &h.view, &mask, &out.view, NULL);
    return result;
}

/* reconstruct(weights, hessian, mask, weights_out, **options) and prune_columns(weights, hessian,
 * keep_columns, weights_out, **options): pk_reconstruct and pk_prune_columns, which read a given
 * mask (rows * cols bytes) or keep flags (cols bytes). */
static PyObject *reconstruct_given(PyObject *args, PyObject *kwargs, int columns) {
    static char *mask_kwlist[] = {"weights", "hessian", "mask", "weights_out", NULL};
    static char *keep_kwlist[] = {"weights", "hessian", "keep_columns", "weights_out", NULL};
    pk_reconstruction_options o;
    pk_reconstruction_options_init(&o);
    matrix_arg w, out;
    hessian_arg h;
    Py_buffer given = {0};
    if (!parse_with_options(args, kwargs, reconstruction_fields, &o, "O&O&y*O&", columns ? keep_kwlist : mask_kwlist,
                            to_matrix, &w, to_hessian, &h, &given, to_writable_matrix, &out))
        return NULL;
    PyObject *result = NULL;
    if (check_size(&given, (Py_ssize_t)(columns ? w.matrix.cols : w.matrix.rows * w.matrix.cols),
                   columns ? "keep_columns" : "mask")) {
        const double *hessian = (const double *)h.view.buf;
        const uint8_t *flags = (const uint8_t *)given.buf;
        CALL_INTO(result, columns ? pk_prune_columns(&w.matrix, hessian, h.size, flags, &o, &out.matrix)
                         : pk_reconstruct(&w.matrix, hessian, h.size, flags, &o, &out.matrix));
    }
    release(&w.view, &h.view, &given, &out.view, NULL);
    return result;
}

static PyObject *py_reconstruct(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kwargs) {
    return reconstruct_given(args, kwargs, 0);
}

static PyObject *py_prune_columns(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kwargs) {
    return reconstruct_given(args, kwargs, 1);
}

/* admm(weights, hessian, mask|None, mask_out, weights_out, **pk_admm_options fields): pk_admm. */
static const option_field admm_fields[] = {
    FIELD(pk_admm_options, scope, 'i'), FIELD(pk_admm_options, precision, 'i'), FIELD(pk_admm_options, sparsity, 'd'),
    FIELD(pk_admm_options, n, 'i'), FIELD(pk_admm_options, m, 'i'), FIELD(pk_admm_options, iterations, 'i'),
    FIELD(pk_admm_options, ramp_iterations, 'i'), FIELD(pk_admm_options, rho, 'd'),
    FIELD(pk_admm_options, rho_growth, 'd'), FIELD(pk_admm_options, rho_interval, 'i'),
    FIELD(pk_admm_options, refine_iterations, 'i'), FIELD(pk_admm_options, dampening, 'd'),
    FIELD(pk_admm_options, num_threads, 'i'), {NULL, 0, 0}};

static PyObject *py_admm(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"weights", "hessian", "mask", "mask_out", "weights_out", NULL};
    pk_admm_options o;
    pk_admm_options_init(&o);
    matrix_arg w, out;
    hessian_arg h;
    Py_buffer given = {0}, mask = {0};
    if (!parse_with_options(args, kwargs, admm_fields, &o, "O&O&z*w*O&", kwlist, to_matrix, &w, to_hessian, &h, &given,
                            &mask, to_writable_matrix, &out))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t entries = (Py_ssize_t)(w.matrix.rows * w.matrix.cols);
    if ((!given.buf || check_size(&given, entries, "mask")) && check_size(&mask, entries, "mask_out"))
        CALL_INTO(result, pk_admm(&w.matrix, (const double *)h.view.buf, h.size, (const uint8_t *)given.buf, &o,
                         (uint8_t *)mask.buf, &out.matrix));
    release(&w.view, &h.view, &given, &mask, &out.view, NULL);
    return result;
}

/* refine_mask(weights, hessian, mask (refined in place), **pk_swap_options fields) -> swaps made. */
static const option_field swap_fields[] = {
    FIELD(pk_swap_options, scope, 'i'), FIELD(pk_swap_options, n, 'i'), FIELD(pk_swap_options, m, 'i'),
    FIELD(pk_swap_options, max_swaps, 'i'), FIELD(pk_swap_options, candidates, 'i'),
    FIELD(pk_swap_options, num_threads, 'i'), {NULL, 0, 0}};

static PyObject *py_refine_mask(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"weights", "hessian", "mask", NULL};
    pk_swap_options o;
    pk_swap_options_init(&o);
    matrix_arg w;
    hessian_arg h;
    Py_buffer mask = {0};
    if (!parse_with_options(args, kwargs, swap_fields, &o, "O&O&w*", kwlist, to_matrix, &w, to_hessian, &h, &mask))
        return NULL;
    PyObject *result = NULL;
    if (check_size(&mask, (Py_ssize_t)(w.matrix.rows * w.matrix.cols), "mask")) {
        int64_t swaps = 0;
        pk_status status;
        UNLOCKED(status = pk_refine_mask(&w.matrix, (const double *)h.view.buf, h.size, &o, (uint8_t *)mask.buf, &swaps));
        result = status == PK_OK ? PyLong_FromLongLong(swaps) : raise_status(status);
    }
    release(&w.view, &h.view, &mask, NULL);
    return result;
}

/* channel_permutation(weights, criterion, permutation_out int64, **pk_permutation_options fields)
 * -> (kept before, kept after): pk_channel_permutation. */
static const option_field permutation_fields[] = {
    FIELD(pk_permutation_options, n, 'i'), FIELD(pk_permutation_options, m, 'i'),
    FIELD(pk_permutation_options, segment, 'L'), FIELD(pk_permutation_options, max_swaps, 'L'),
    FIELD(pk_permutation_options, time_limit, 'd'), FIELD(pk_permutation_options, num_threads, 'i'), {NULL, 0, 0}};

static PyObject *py_channel_permutation(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"weights", "criterion", "permutation_out", NULL};
    pk_permutation_options o;
    pk_permutation_options_init(&o);
    matrix_arg w;
    criterion_arg c;
    Py_buffer perm = {0};
    if (!parse_with_options(args, kwargs, permutation_fields, &o, "O&O&w*", kwlist, to_matrix, &w, to_criterion, &c,
                            &perm))
        return NULL;
    PyObject *result = NULL;
    if (check_size(&perm, (Py_ssize_t)(w.matrix.cols * 8), "permutation")) {
        double before = 0, after = 0;
        pk_status status;
        UNLOCKED(status = pk_channel_permutation(&w.matrix, &c.criterion, &o, (int64_t *)perm.buf, &before, &after));
        result = status == PK_OK ? Py_BuildValue("dd", before, after) : raise_status(status);
    }
    PyBuffer_Release(&w.view);
    criterion_release(&c);
    PyBuffer_Release(&perm);
    return result;
}

/* outlier_ratio(weights, criterion, threshold) -> ratio: pk_outlier_ratio. */
static PyObject *py_outlier_ratio(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"weights", "criterion", "threshold", NULL};
    matrix_arg w;
    criterion_arg c;
    double threshold, ratio = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&O&d", kwlist, to_matrix, &w, to_criterion, &c, &threshold))
        return NULL;
    pk_status status;
    UNLOCKED(status = pk_outlier_ratio(&w.matrix, &c.criterion, threshold, &ratio));
    PyBuffer_Release(&w.view);
    criterion_release(&c);
    return status == PK_OK ? PyFloat_FromDouble(ratio) : raise_status(status);
}

/* allocate_sparsity(sizes int64, importance float64, sparsity, spread, pruned_out int64,
 *                   sparsities_out float64): pk_allocate_sparsity. */
static PyObject *py_allocate_sparsity(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"sizes", "importance", "sparsity", "spread", "pruned_out", "sparsities_out", NULL};
    Py_buffer sizes = {0}, importance = {0}, pruned = {0}, sparsities = {0};
    double sparsity, spread;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*y*ddw*w*", kwlist, &sizes, &importance, &sparsity, &spread, &pruned,
                                     &sparsities))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t layers = sizes.len / 8;
    if (importance.len != layers * 8) {
        PyErr_Format(PyExc_ValueError, "sizes has %zd entries, importance %zd", layers, importance.len / 8);
    } else if (check_size(&pruned, layers * 8, "pruned") && check_size(&sparsities, layers * 8, "sparsities")) {
        CALL_INTO(result, pk_allocate_sparsity((const int64_t *)sizes.buf, (const double *)importance.buf, (int64_t)layers, sparsity,
                                      spread, (int64_t *)pruned.buf, (double *)sparsities.buf));
    }
    release(&sizes, &importance, &pruned, &sparsities, NULL);
    return result;
}

/* compensate_bias(original, pruned, mean float64, bias (1 x rows, writable)): pk_compensate_bias. */
static PyObject *py_compensate_bias(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"original", "pruned", "mean", "bias", NULL};
    matrix_arg w, p, b;
    Py_buffer mean = {0};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&O&y*O&", kwlist, to_matrix, &w, to_matrix, &p, &mean,
                                     to_writable_matrix, &b))
        return NULL;
    pk_status status;
    UNLOCKED(status = pk_compensate_bias(&w.matrix, &p.matrix, (const double *)mean.buf, (int64_t)(mean.len / 8), &b.matrix));
    release(&w.view, &p.view, &mean, &b.view, NULL);
    return none_or_raise(status);
}

/* output_error(original, pruned, hessian) -> (error, relative): pk_output_error. */
static PyObject *py_output_error(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"original", "pruned", "hessian", NULL};
    matrix_arg w, p;
    hessian_arg h;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&O&O&", kwlist, to_matrix, &w, to_matrix, &p, to_hessian, &h))
        return NULL;
    double error = 0, relative = 0;
    pk_status status;
    UNLOCKED(status = pk_output_error(&w.matrix, &p.matrix, (const double *)h.view.buf, h.size, &error, &relative));
    release(&w.view, &p.view, &h.view, NULL);
    return status == PK_OK ? Py_BuildValue("(dd)", error, relative) : raise_status(status);
}

/* Sparse formats: one function per pk_ call. Exports take the weights and caller-allocated outputs
 * (capacity: the entries columns_out / values_out hold); imports take the stored arrays and the dense
 * output matrix, and check the buffers hold what the library will read. */
static PyObject *py_count_nonzero(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"weights", NULL};
    matrix_arg w;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&", kwlist, to_matrix, &w)) return NULL;
    int64_t nnz = 0;
    pk_status status;
    UNLOCKED(status = pk_count_nonzero(&w.matrix, &nnz));
    PyBuffer_Release(&w.view);
    return status == PK_OK ? PyLong_FromLongLong(nnz) : raise_status(status);
}

static Py_ssize_t element_size(int32_t dtype) { return dtype == PK_DTYPE_FLOAT64 ? 8 : dtype == PK_DTYPE_FLOAT32 ? 4 : 2; }

/* export_24(weights, values_out, metadata_out) */
static PyObject *py_export_24(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"weights", "values_out", "metadata_out", NULL};
    matrix_arg w;
    Py_buffer values = {0}, metadata = {0};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&w*w*", kwlist, to_matrix, &w, &values, &metadata)) return NULL;
    const pk_matrix *m = &w.matrix;
    PyObject *result = NULL;
    if (check_size(&values, (Py_ssize_t)(m->rows * (m->cols / 2)) * element_size(m->dtype), "values") &&
        check_size(&metadata, (Py_ssize_t)(m->rows * ((m->cols + 7) / 8)), "metadata"))
        CALL_INTO(result, pk_export_24(m, values.buf, (uint8_t *)metadata.buf));
    release(&w.view, &values, &metadata, NULL);
    return result;
}

/* import_24(values, metadata, dense_out) */
static PyObject *py_import_24(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"values", "metadata", "dense_out", NULL};
    Py_buffer values = {0}, metadata = {0};
    matrix_arg d;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*y*O&", kwlist, &values, &metadata, to_writable_matrix, &d)) return NULL;
    const pk_matrix *m = &d.matrix;
    PyObject *result = NULL;
    if (check_size(&values, (Py_ssize_t)(m->rows * (m->cols / 2)) * element_size(m->dtype), "values") &&
        check_size(&metadata, (Py_ssize_t)(m->rows * ((m->cols + 7) / 8)), "metadata"))
        CALL_INTO(result, pk_import_24(values.buf, (const uint8_t *)metadata.buf, m));
    release(&values, &metadata, &d.view, NULL);
    return result;
}

/* export_csr(weights, capacity, row_offsets_out, columns_out, values_out) */
static PyObject *py_export_csr(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"weights", "capacity", "row_offsets_out", "columns_out", "values_out", NULL};
    matrix_arg w;
    long long capacity;
    Py_buffer offsets = {0}, columns = {0}, values = {0};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&Lw*w*w*", kwlist, to_matrix, &w, &capacity, &offsets, &columns, &values))
        return NULL;
    const pk_matrix *m = &w.matrix;
    PyObject *result = NULL;
    if (check_size(&offsets, (Py_ssize_t)((m->rows + 1) * 8), "row_offsets") &&
        check_size(&columns, (Py_ssize_t)(capacity * 8), "columns") &&
        check_size(&values, (Py_ssize_t)capacity * element_size(m->dtype), "values"))
        CALL_INTO(result, pk_export_csr(m, capacity, (int64_t *)offsets.buf, (int64_t *)columns.buf, values.buf));
    release(&w.view, &offsets, &columns, &values, NULL);
    return result;
}

/* import_csr(row_offsets, columns, values, dense_out): columns and values must hold
 * row_offsets[rows] entries (the library reads that many). */
static PyObject *py_import_csr(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"row_offsets", "columns", "values", "dense_out", NULL};
    Py_buffer offsets = {0}, columns = {0}, values = {0};
    matrix_arg d;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*y*y*O&", kwlist, &offsets, &columns, &values, to_writable_matrix, &d))
        return NULL;
    const pk_matrix *m = &d.matrix;
    PyObject *result = NULL;
    if (check_size(&offsets, (Py_ssize_t)((m->rows + 1) * 8), "row_offsets")) {
        int64_t stored = m->rows > 0 ? ((const int64_t *)offsets.buf)[m->rows] : 0;
        if (stored < 0) stored = 0; /* the library reports bad offsets */
        if (check_size(&columns, (Py_ssize_t)(stored * 8), "columns") &&
            check_size(&values, (Py_ssize_t)stored * element_size(m->dtype), "values"))
            CALL_INTO(result, pk_import_csr((const int64_t *)offsets.buf, (const int64_t *)columns.buf, values.buf, m));
    }
    release(&offsets, &columns, &values, &d.view, NULL);
    return result;
}

/* export_bitmask(weights, capacity, bits_out, values_out) */
static PyObject *py_export_bitmask(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"weights", "capacity", "bits_out", "values_out", NULL};
    matrix_arg w;
    long long capacity;
    Py_buffer bits = {0}, values = {0};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&Lw*w*", kwlist, to_matrix, &w, &capacity, &bits, &values)) return NULL;
    const pk_matrix *m = &w.matrix;
    PyObject *result = NULL;
    if (check_size(&bits, (Py_ssize_t)(m->rows * ((m->cols + 7) / 8)), "bits") &&
        check_size(&values, (Py_ssize_t)capacity * element_size(m->dtype), "values"))
        CALL_INTO(result, pk_export_bitmask(m, capacity, (uint8_t *)bits.buf, values.buf));
    release(&w.view, &bits, &values, NULL);
    return result;
}

/* import_bitmask(bits, values, dense_out): values must hold one entry per bit set in each row's
 * first cols bits (the library reads that many). */
static PyObject *py_import_bitmask(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"bits", "values", "dense_out", NULL};
    Py_buffer bits = {0}, values = {0};
    matrix_arg d;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*y*O&", kwlist, &bits, &values, to_writable_matrix, &d)) return NULL;
    const pk_matrix *m = &d.matrix;
    PyObject *result = NULL;
    int64_t row_bytes = (m->cols + 7) / 8;
    if (check_size(&bits, (Py_ssize_t)(m->rows * row_bytes), "bits")) {
        int64_t present = 0;
        for (int64_t r = 0; r < m->rows; r++)
            for (int64_t c = 0; c < m->cols; c++) present += (((const uint8_t *)bits.buf)[r * row_bytes + c / 8] >> (c % 8)) & 1;
        if (values.len != (Py_ssize_t)present * element_size(m->dtype) && !(present == 0 && values.len <= element_size(m->dtype))) {
            PyErr_Format(PyExc_ValueError, "the bit mask and the values disagree: %lld entries set, %zd values", (long long)present,
                         values.len / element_size(m->dtype));
        } else {
            CALL_INTO(result, pk_import_bitmask((const uint8_t *)bits.buf, values.buf, m));
        }
    }
    release(&bits, &values, &d.view, NULL);
    return result;
}

/* ------------------------------------------------------------------------------------------ */
/* Structured pruning. A group is a dict {members, min_keep, stage, activations} of pk_group's
 * fields, a member a dict {tensor, axis, scored, span, block_cols, criterion} of
 * pk_group_member's (tensor a matrix, criterion as to_criterion takes it). */

typedef struct StatsObject StatsObject;
static pk_stats *stats_handle(PyObject *object);

typedef struct group_arg {
    Py_ssize_t count; /* members taken so far */
    matrix_arg *tensors;
    criterion_arg *criteria;
    pk_group_member *members;
    pk_group group;
} group_arg;

static const option_field member_fields[] = {
    FIELD(pk_group_member, axis, 'i'), FIELD(pk_group_member, scored, 'i'), FIELD(pk_group_member, span, 'L'),
    FIELD(pk_group_member, block_cols, 'L'), {NULL, 0, 0}};
static const option_field group_fields[] = {FIELD(pk_group, min_keep, 'L'), FIELD(pk_group, stage, 'i'), {NULL, 0, 0}};

static void group_release(group_arg *g) {
    for (Py_ssize_t i = 0; i < g->count; i++) {
        PyBuffer_Release(&g->tensors[i].view);
        criterion_release(&g->criteria[i]);
    }
    PyMem_Free(g->tensors);
    PyMem_Free(g->criteria);
    PyMem_Free(g->members);
    memset(g, 0, sizeof(*g));
}

/* One member dict into g's slot i. */
static int member_take(PyObject *object, int writable, group_arg *g, Py_ssize_t i) {
    static const char *const keys[] = {"tensor", "criterion", NULL};
    PyObject *values[2] = {NULL, NULL};
    pk_group_member *m = &g->members[i];
    if (!take_dict(object, "member", member_fields, m, keys, values)) return 0;
    if (!values[0]) PyErr_SetString(PyExc_TypeError, "member: no tensor");
    if (!values[0] || !(writable ? to_writable_matrix : to_matrix)(values[0], &g->tensors[i])) return 0;
    if (!to_criterion(values[1] ? values[1] : Py_None, &g->criteria[i])) {
        PyBuffer_Release(&g->tensors[i].view);
        return 0;
    }
    m->tensor = g->tensors[i].matrix;
    m->criterion = &g->criteria[i].criterion;
    return 1;
}

/* Fills *g from a group dict; on failure sets an exception, releases what it took, returns 0. */
static int group_take(PyObject *object, int writable, group_arg *g) {
    memset(g, 0, sizeof(*g));
    static const char *const keys[] = {"members", "activations", NULL};
    PyObject *values[2] = {NULL, NULL};
    if (!take_dict(object, "group", group_fields, &g->group, keys, values)) return 0;
    PyObject *list = values[0], *stats = values[1];
    if (!list || !PyList_Check(list)) {
        PyErr_SetString(PyExc_TypeError, "group: members must be a list");
        return 0;
    }
    Py_ssize_t count = PyList_GET_SIZE(list);
    if (!(g->tensors = (matrix_arg *)slots(count, sizeof(matrix_arg))) ||
        !(g->criteria = (criterion_arg *)slots(count, sizeof(criterion_arg))) ||
        !(g->members = (pk_group_member *)slots(count, sizeof(pk_group_member)))) {
        group_release(g);
        return 0;
    }
    for (; g->count < count; g->count++)
        if (!member_take(PyList_GET_ITEM(list, g->count), writable, g, g->count)) {
            group_release(g);
            return 0;
        }
    g->group.members = g->members;
    g->group.member_count = (int64_t)count;
    if (stats && stats != Py_None && !(g->group.activations = stats_handle(stats))) {
        group_release(g);
        return 0;
    }
    return 1;
}

static int group_convert(PyObject *object, group_arg *g, int writable) {
    if (!object) {
        group_release(g);
        return 1;
    }
    return group_take(object, writable, g) ? Py_CLEANUP_SUPPORTED : 0;
}
static int to_group(PyObject *object, void *g) { return group_convert(object, (group_arg *)g, 0); }
static int to_writable_group(PyObject *object, void *g) { return group_convert(object, (group_arg *)g, 1); }

/* A list of group dicts: groups[i] and the plain pk_group array the library takes. */
typedef struct groups_arg {
    Py_ssize_t count;
    group_arg *groups;
    pk_group *plain;
} groups_arg;

static void groups_release(groups_arg *l) {
    for (Py_ssize_t i = 0; i < l->count; i++) group_release(&l->groups[i]);
    PyMem_Free(l->groups);
    PyMem_Free(l->plain);
    memset(l, 0, sizeof(*l));
}

static int groups_take(PyObject *list, int writable, groups_arg *l) {
    memset(l, 0, sizeof(*l));
    if (!PyList_Check(list)) {
        PyErr_SetString(PyExc_TypeError, "groups must be a list");
        return 0;
    }
    Py_ssize_t count = PyList_GET_SIZE(list);
    if (!(l->groups = (group_arg *)slots(count, sizeof(group_arg))) || !(l->plain = (pk_group *)slots(count, sizeof(pk_group)))) {
        groups_release(l);
        return 0;
    }
    for (; l->count < count; l->count++) {
        if (!group_take(PyList_GET_ITEM(list, l->count), writable, &l->groups[l->count])) {
            groups_release(l);
            return 0;
        }
        l->plain[l->count] = l->groups[l->count].group;
    }
    return 1;
}

/* The structure options shared by select_structures and progressive_structures. */
static const option_field structure_fields[] = {
    FIELD(pk_structure_options, criterion, 'i'), FIELD(pk_structure_options, reduction, 'i'),
    FIELD(pk_structure_options, normalization, 'i'), FIELD(pk_structure_options, mode, 'i'),
    FIELD(pk_structure_options, ratio, 'd'), FIELD(pk_structure_options, multiple, 'L'),
    FIELD(pk_structure_options, num_threads, 'i'), {NULL, 0, 0}};

/* select_structures(groups, keep_out, scores_out, stage_values=None, scores=None,
 *                   **pk_structure_options fields): pk_select_structures. */
static PyObject *py_select_structures(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"groups", "keep_out", "scores_out", "stage_values", "scores", NULL};
    pk_structure_options o;
    pk_structure_options_init(&o);
    PyObject *list;
    Py_buffer keep = {0}, scores_out = {0}, stages = {0}, given = {0};
    if (!parse_with_options(args, kwargs, structure_fields, &o, "Ow*w*|z*z*", kwlist, &list, &keep, &scores_out, &stages,
                            &given))
        return NULL;
    groups_arg l;
    PyObject *result = NULL;
    if (groups_take(list, 0, &l)) {
        if (stages.buf) {
            o.stage_values = (const double *)stages.buf;
            o.stage_count = (int64_t)(stages.len / 8);
        }
        o.scores = (const double *)given.buf;
        CALL_INTO(result, pk_select_structures(l.plain, (int64_t)l.count, &o, (uint8_t *)keep.buf, (double *)scores_out.buf));
        groups_release(&l);
    }
    release(&keep, &scores_out, &stages, &given, NULL);
    return result;
}

/* A compensation dict {member, hessian, **pk_reconstruction_options fields}. */
typedef struct compensation_arg {
    pk_compensation compensation;
    pk_reconstruction_options options;
    hessian_arg hessian;
} compensation_arg;

static int compensation_take(PyObject *object, compensation_arg *c) {
    memset(c, 0, sizeof(*c));
    pk_reconstruction_options_init(&c->options);
    static const char *const keys[] = {"member", "hessian", NULL};
    static const option_field member = FIELD(pk_compensation, member, 'L');
    PyObject *values[2] = {NULL, NULL};
    if (!take_dict(object, "compensation", reconstruction_fields, &c->options, keys, values) ||
        (values[0] && values[0] != Py_None && !set_field(values[0], &member, &c->compensation)) ||
        !to_hessian(values[1] ? values[1] : Py_None, &c->hessian))
        return 0;
    c->compensation.hessian = (const double *)c->hessian.view.buf;
    c->compensation.hessian_size = c->hessian.size;
    c->compensation.options = &c->options;
    return 1;
}

/* compact_group(group, keep, outputs [matrix], kept_indices_out, compensation=None): pk_compact_group. */
static PyObject *py_compact_group(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"group", "keep", "outputs", "kept_indices_out", "compensation", NULL};
    group_arg g;
    matrix_list outputs;
    PyObject *compensation = Py_None, *result = NULL;
    Py_buffer keep = {0}, kept = {0};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&y*O&w*|O", kwlist, to_group, &g, &keep, to_writable_matrices, &outputs,
                                     &kept, &compensation))
        return NULL;
    compensation_arg c;
    memset(&c, 0, sizeof(c));
    if (outputs.count != g.count) {
        PyErr_SetString(PyExc_ValueError, "one output per member is needed");
    } else if (compensation == Py_None || compensation_take(compensation, &c)) {
        CALL_INTO(result, pk_compact_group(&g.group, (const uint8_t *)keep.buf,
                                           compensation == Py_None ? NULL : &c.compensation, outputs.plain,
                                           (int64_t *)kept.buf));
    }
    PyBuffer_Release(&c.hessian.view);
    group_release(&g);
    matrix_list_release(&outputs);
    release(&keep, &kept, NULL);
    return result;
}

/* group_layout(group, kept=None): pk_group_layout. The structure count; with kept, also the
 * (rows, cols) of every member once kept structures stay: (count, [(rows, cols), ...]). */
static PyObject *py_group_layout(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"group", "kept", NULL};
    group_arg g;
    PyObject *kept_arg = Py_None, *result = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&|O", kwlist, to_group, &g, &kept_arg)) return NULL;
    long long kept = 0;
    int64_t *shapes = NULL;
    if (kept_arg != Py_None && (kept = PyLong_AsLongLong(kept_arg)) == -1 && PyErr_Occurred()) goto done;
    if (kept_arg != Py_None && !(shapes = (int64_t *)slots(g.count * 2, sizeof(int64_t)))) goto done;
    int64_t count = 0;
    pk_status status;
    UNLOCKED(status = pk_group_layout(&g.group, (int64_t)kept, &count, shapes));
    if (status != PK_OK) {
        result = none_or_raise(status);
    } else if (!shapes) {
        result = PyLong_FromLongLong(count);
    } else {
        PyObject *list = PyList_New(g.count);
        for (Py_ssize_t i = 0; list && i < g.count; i++) {
            PyObject *shape = Py_BuildValue("(LL)", (long long)shapes[2 * i], (long long)shapes[2 * i + 1]);
            if (!shape) Py_CLEAR(list);
            else PyList_SET_ITEM(list, i, shape);
        }
        result = list ? Py_BuildValue("(LN)", (long long)count, list) : NULL;
    }
done:
    PyMem_Free(shapes);
    group_release(&g);
    return result;
}

/* apply_structures(group, keep): pk_apply_structures, in place on the members. */
static PyObject *py_apply_structures(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"group", "keep", NULL};
    group_arg g;
    Py_buffer keep = {0};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&y*", kwlist, to_writable_group, &g, &keep)) return NULL;
    pk_status status;
    UNLOCKED(status = pk_apply_structures(&g.group, (const uint8_t *)keep.buf));
    group_release(&g);
    PyBuffer_Release(&keep);
    return none_or_raise(status);
}

/* permute_group(group, permutation int64): pk_permute_group, in place on the members. */
static PyObject *py_permute_group(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"group", "permutation", NULL};
    group_arg g;
    Py_buffer perm = {0};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&y*", kwlist, to_writable_group, &g, &perm)) return NULL;
    PyObject *result = NULL;
    if (perm.len % 8) {
        PyErr_SetString(PyExc_ValueError, "the permutation must be int64");
    } else {
        CALL_INTO(result, pk_permute_group(&g.group, (const int64_t *)perm.buf, (int64_t)(perm.len / 8)));
    }
    group_release(&g);
    PyBuffer_Release(&perm);
    return result;
}

/* structure_mask(group, member, keep, mask_out): pk_structure_mask. */
static PyObject *py_structure_mask(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"group", "member", "keep", "mask_out", NULL};
    group_arg g;
    long long member;
    Py_buffer keep = {0}, out = {0};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&Ly*w*", kwlist, to_group, &g, &member, &keep, &out)) return NULL;
    PyObject *result = NULL;
    const pk_matrix *t = member >= 0 && member < g.count ? &g.members[member].tensor : NULL;
    if (!t || check_size(&out, (Py_ssize_t)(t->rows * t->cols), "mask")) {
        pk_status status; /* a member out of range: the library reports it */
        UNLOCKED(status = pk_structure_mask(&g.group, (int64_t)member, (const uint8_t *)keep.buf, (uint8_t *)out.buf));
        result = none_or_raise(status);
    }
    group_release(&g);
    release(&keep, &out, NULL);
    return result;
}

/* compact_group_data_free(group, keep, outputs [matrix], kept_indices_out, bias_shift_out,
 *                         **pk_data_free_options fields): pk_compact_group_data_free. */
static const option_field data_free_fields[] = {
    FIELD(pk_data_free_options, producer, 'L'), FIELD(pk_data_free_options, next, 'L'),
    FIELD(pk_data_free_options, bn_weight, 'L'), FIELD(pk_data_free_options, bn_bias, 'L'),
    FIELD(pk_data_free_options, bn_mean, 'L'), FIELD(pk_data_free_options, bn_var, 'L'),
    FIELD(pk_data_free_options, epsilon, 'd'), FIELD(pk_data_free_options, dampening, 'd'),
    FIELD(pk_data_free_options, activation, 'i'), FIELD(pk_data_free_options, num_threads, 'i'), {NULL, 0, 0}};

static PyObject *py_compact_group_data_free(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"group", "keep", "outputs", "kept_indices_out", "bias_shift_out", NULL};
    pk_data_free_options o;
    pk_data_free_options_init(&o);
    group_arg g;
    matrix_list outputs;
    Py_buffer keep = {0}, kept = {0}, shift = {0};
    if (!parse_with_options(args, kwargs, data_free_fields, &o, "O&y*O&w*w*", kwlist, to_group, &g, &keep,
                            to_writable_matrices, &outputs, &kept, &shift))
        return NULL;
    PyObject *result = NULL;
    if (outputs.count != g.count) {
        PyErr_SetString(PyExc_ValueError, "one output per member is needed");
    } else {
        CALL_INTO(result, pk_compact_group_data_free(&g.group, (const uint8_t *)keep.buf, &o, outputs.plain,
                                                     (int64_t *)kept.buf, (double *)shift.buf, (int64_t)(shift.len / 8)));
    }
    group_release(&g);
    matrix_list_release(&outputs);
    release(&keep, &kept, &shift, NULL);
    return result;
}

/* key_channels(queries, keys, heads, ratio, keep_out, scores_out): pk_key_channels. */
static PyObject *py_key_channels(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"queries", "keys", "heads", "ratio", "keep_out", "scores_out", NULL};
    matrix_arg q, k;
    long long heads;
    double ratio;
    Py_buffer keep = {0}, scores = {0};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&O&Ldw*w*", kwlist, to_matrix, &q, to_matrix, &k, &heads, &ratio,
                                     &keep, &scores))
        return NULL;
    PyObject *result = NULL;
    if (check_size(&keep, (Py_ssize_t)k.matrix.cols, "keep") && check_size(&scores, (Py_ssize_t)(k.matrix.cols * 8), "scores"))
        CALL_INTO(result, pk_key_channels(&q.matrix, &k.matrix, (int64_t)heads, ratio, (uint8_t *)keep.buf, (double *)scores.buf));
    release(&q.view, &k.view, &keep, &scores, NULL);
    return result;
}

/* ------------------------------------------------------------------------------------------ */
/* Stats: owns one pk_stats handle. */

struct StatsObject {
    PyObject_HEAD
    pk_stats *handle;
};


/* A new instance of `type` (Stats or a subclass) owning `handle`. */
static PyObject *stats_wrap(PyTypeObject *type, pk_stats *handle) {
    StatsObject *self = (StatsObject *)type->tp_alloc(type, 0);
    if (!self) {
        pk_stats_free(handle);
        return NULL;
    }
    self->handle = handle;
    return (PyObject *)self;
}

static PyObject *stats_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    static char *names[] = {"features", "gram", NULL};
    long long features;
    int gram = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "L|p", names, &features, &gram)) return NULL;
    pk_stats *handle = NULL;
    pk_status status = gram ? pk_stats_create_gram(features, &handle) : pk_stats_create(features, &handle);
    return status == PK_OK ? stats_wrap(type, handle) : raise_status(status);
}

static void stats_dealloc(StatsObject *self) {
    pk_stats_free(self->handle);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* _update(batch, rows=None): pk_stats_update, or pk_stats_update_rows when rows (a buffer of
 * int64 row numbers) is given. */
static PyObject *stats_update(StatsObject *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"batch", "rows", NULL};
    matrix_arg b;
    Py_buffer index = {0};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&|y*", kwlist, to_matrix, &b, &index)) return NULL;
    PyObject *result = NULL;
    if (!index.obj)
        CALL_INTO(result, pk_stats_update(self->handle, &b.matrix));
    else if (index.len % 8)
        PyErr_SetString(PyExc_ValueError, "rows: expected int64 row numbers");
    else
        CALL_INTO(result, pk_stats_update_rows(self->handle, &b.matrix, (const int64_t *)index.buf, (int64_t)(index.len / 8)));
    release(&index, &b.view, NULL);
    return result;
}

static PyObject *stats_merge(StatsObject *self, PyObject *other) {
    if (!PyObject_TypeCheck(other, &StatsType)) {
        PyErr_SetString(PyExc_TypeError, "merge() takes another prunekit.Stats");
        return NULL;
    }
    pk_status status;
    UNLOCKED(status = pk_stats_merge(self->handle, ((StatsObject *)other)->handle));
    return none_or_raise(status);
}

/* _l2_norm(out), _mean(out), ...: the pk_stats_* reader of that name into a float64 buffer. */
static PyObject *stats_read(StatsObject *self, PyObject *out_object,
                            pk_status (*read)(const pk_stats *, double *, int64_t)) {
    Py_buffer out;
    if (PyObject_GetBuffer(out_object, &out, PyBUF_WRITABLE) != 0) return NULL;
    pk_status status;
    UNLOCKED(status = read(self->handle, (double *)out.buf, (int64_t)(out.len / 8)));
    PyBuffer_Release(&out);
    return none_or_raise(status);
}

#define STATS_READER(name) \
    static PyObject *stats_##name(StatsObject *self, PyObject *out) { return stats_read(self, out, pk_stats_##name); }
STATS_READER(l2_norm)
STATS_READER(mean)
STATS_READER(variance)
STATS_READER(std)
STATS_READER(gram)
STATS_READER(centered_gram)
STATS_READER(mean_abs)
STATS_READER(zero_fraction)

/* count, features: the pk_stats_* getter of that name. */
#define STATS_GETTER(name) \
    static PyObject *stats_##name(StatsObject *self, void *Py_UNUSED(closure)) { \
        int64_t value = 0; \
        pk_status status = pk_stats_##name(self->handle, &value); \
        return status == PK_OK ? PyLong_FromLongLong(value) : raise_status(status); \
    }
STATS_GETTER(count)
STATS_GETTER(features)

/* kind_bytes(handle): the bytes of pk_<kind>_serialize, sized by pk_<kind>_serialized_size. */
#define SERIALIZER(kind) \
    static PyObject *kind##_bytes(const pk_##kind *handle) { \
        size_t size = 0, written = 0; \
        pk_status status = pk_##kind##_serialized_size(handle, &size); \
        PyObject *bytes = status == PK_OK ? PyBytes_FromStringAndSize(NULL, (Py_ssize_t)size) : raise_status(status); \
        if (bytes && (status = pk_##kind##_serialize(handle, PyBytes_AS_STRING(bytes), size, &written)) != PK_OK) { \
            Py_DECREF(bytes); \
            return raise_status(status); \
        } \
        return bytes; \
    }
SERIALIZER(stats)
SERIALIZER(pruner)

static PyObject *stats_to_bytes(StatsObject *self, PyObject *Py_UNUSED(unused)) { return stats_bytes(self->handle); }

static PyObject *stats_from_bytes(PyObject *cls, PyObject *arg) {
    Py_buffer b = {0};
    if (PyObject_GetBuffer(arg, &b, PyBUF_SIMPLE) != 0) return NULL;
    pk_stats *handle = NULL;
    pk_status status;
    UNLOCKED(status = pk_stats_deserialize(b.buf, (size_t)b.len, &handle));
    PyBuffer_Release(&b);
    return status == PK_OK ? stats_wrap((PyTypeObject *)cls, handle) : raise_status(status);
}

#define READER(name) {"_" #name, (PyCFunction)stats_##name, METH_O, NULL}
static PyMethodDef stats_methods[] = {
    {"_update", (PyCFunction)(void (*)(void))stats_update, METH_VARARGS | METH_KEYWORDS, NULL},
    {"merge", (PyCFunction)stats_merge, METH_O, "merge(other): add another accumulator's data to this one."},
    READER(l2_norm), READER(mean), READER(variance), READER(std), READER(gram), READER(centered_gram),
    READER(mean_abs), READER(zero_fraction),
    {"to_bytes", (PyCFunction)stats_to_bytes, METH_NOARGS, "The accumulator in the versioned statistics format."},
    {"from_bytes", (PyCFunction)stats_from_bytes, METH_O | METH_CLASS, "Restore an accumulator from to_bytes() output."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef stats_getset[] = {
    {"count", (getter)stats_count, NULL, "Tokens accumulated so far.", NULL},
    {"features", (getter)stats_features, NULL, "Number of input features.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject StatsType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "prunekit._prunekit.Stats",
    .tp_basicsize = sizeof(StatsObject),
    .tp_dealloc = (destructor)stats_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "Streaming per-feature activation statistics (a pk_stats handle).",
    .tp_methods = stats_methods,
    .tp_getset = stats_getset,
    .tp_new = stats_new,
};

/* ------------------------------------------------------------------------------------------ */

static pk_stats *stats_handle(PyObject *object) {
    if (!PyObject_TypeCheck(object, &StatsType)) {
        PyErr_SetString(PyExc_TypeError, "activations must be a prunekit.Stats");
        return NULL;
    }
    return ((StatsObject *)object)->handle;
}

/* ------------------------------------------------------------------------------------------ */
/* Methods: low rank, pruning at inference time. Keyword arguments; an option not given keeps
 * pk_low_rank_options_init's default. */

/* low_rank(weights, hessian, a_out, b_out, singular_values_out, **pk_low_rank_options fields) -> r */
static const option_field low_rank_fields[] = {
    FIELD(pk_low_rank_options, rank, 'L'), FIELD(pk_low_rank_options, energy, 'd'),
    FIELD(pk_low_rank_options, dampening, 'd'), FIELD(pk_low_rank_options, max_dampening_retries, 'i'),
    FIELD(pk_low_rank_options, num_threads, 'i'), {NULL, 0, 0}};

static PyObject *py_low_rank(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"weights", "hessian", "a_out", "b_out", "singular_values_out", NULL};
    pk_low_rank_options o;
    pk_low_rank_options_init(&o);
    matrix_arg w, a, b;
    hessian_arg h;
    Py_buffer sv = {0};
    if (!parse_with_options(args, kwargs, low_rank_fields, &o, "O&O&O&O&w*", kwlist, to_matrix, &w, to_hessian, &h,
                            to_writable_matrix, &a, to_writable_matrix, &b, &sv))
        return NULL;
    PyObject *result = NULL;
    int64_t k = w.matrix.rows < w.matrix.cols ? w.matrix.rows : w.matrix.cols;
    if (check_size(&sv, (Py_ssize_t)(k * 8), "singular_values")) {
        int64_t r = 0;
        pk_status status;
        UNLOCKED(status = pk_low_rank(&w.matrix, (const double *)h.view.buf, h.size, &o, &a.matrix, &b.matrix, &r, (double *)sv.buf));
        result = status == PK_OK ? PyLong_FromLongLong(r) : raise_status(status);
    }
    release(&w.view, &h.view, &a.view, &b.view, &sv, NULL);
    return result;
}

/* top_channels(scores (float32 matrix), k, indices_out int64, magnitude=False): pk_top_channels. */
static PyObject *py_top_channels(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kwargs) {
    static char *names[] = {"scores", "k", "indices_out", "magnitude", NULL};
    matrix_arg sm;
    long long k;
    int magnitude = 0;
    Py_buffer out = {0};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&Lw*|p", names, to_matrix, &sm, &k, &out, &magnitude)) return NULL;
    PyObject *result = NULL;
    int64_t rows = sm.matrix.rows;
    if (check_size(&out, (Py_ssize_t)(rows > 0 && k > 0 ? rows * k * 8 : 0), "indices"))
        CALL_INTO(result, pk_top_channels(&sm.matrix, (int64_t)k, magnitude, (int64_t *)out.buf));
    release(&sm.view, &out, NULL);
    return result;
}

/* gather(source, axis, indices int64, out): pk_gather. */
static PyObject *py_gather(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kwargs) {
    static char *names[] = {"source", "axis", "indices", "out", NULL};
    matrix_arg src, out;
    int axis;
    Py_buffer idx = {0};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&iy*O&", names, to_matrix, &src, &axis, &idx, to_writable_matrix, &out))
        return NULL;
    pk_status status;
    UNLOCKED(status = pk_gather(&src.matrix, axis, (const int64_t *)idx.buf, (int64_t)(idx.len / 8), &out.matrix));
    release(&src.view, &idx, &out.view, NULL);
    return none_or_raise(status);
}

/* random_channel_mask(importance, count, mask, *, threshold, drop_probability, seed) */
static PyObject *py_random_channel_mask(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kwargs) {
    static char *names[] = {"importance", "count", "mask", "threshold", "drop_probability", "seed", NULL};
    Py_buffer imp = {0}, mask = {0};
    long long count;
    double threshold, probability;
    unsigned long long seed;
    PyObject *result = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*Lw*$ddK", names, &imp, &count, &mask, &threshold, &probability, &seed))
        return NULL;
    if (check_size(&imp, (Py_ssize_t)(count > 0 ? count * 4 : 0), "importance") &&
        check_size(&mask, (Py_ssize_t)(count > 0 ? count : 0), "mask")) {
        pk_status status;
        UNLOCKED(status = pk_random_channel_mask((const float *)imp.buf, (int64_t)count, threshold, probability, (uint64_t)seed,
                                        (uint8_t *)mask.buf));
        result = status == PK_OK ? Py_NewRef(Py_None) : raise_status(status);
    }
    release(&imp, &mask, NULL);
    return result;
}

static PyObject *py_version(PyObject *Py_UNUSED(self), PyObject *unused) {
    (void)unused;
    return Py_BuildValue("(is)", pk_version_number(), pk_version_string());
}

/* ------------------------------------------------------------------------------------------ */
/* Pruning over time: schedules, pruner handles (a capsule that also holds the weight buffers
 * for the pruner's lifetime, as the header requires), soft masks and the host-driven loops. */

/* A schedule from a dict of pk_schedule's fields (None = the defaults). */
static const option_field schedule_fields[] = {
    FIELD(pk_schedule, kind, 'i'), FIELD(pk_schedule, begin, 'L'), FIELD(pk_schedule, end, 'L'),
    FIELD(pk_schedule, frequency, 'L'), FIELD(pk_schedule, initial_sparsity, 'd'),
    FIELD(pk_schedule, final_sparsity, 'd'), {NULL, 0, 0}};

static int to_schedule(PyObject *object, void *target) {
    pk_schedule_init((pk_schedule *)target);
    return fields_from_dict(object, schedule_fields, target, "schedule");
}

/* schedule_sparsity(schedule, step): pk_schedule_sparsity. */
static PyObject *py_schedule_sparsity(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"schedule", "step", NULL};
    pk_schedule s;
    long long step;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&L", kwlist, to_schedule, &s, &step)) return NULL;
    double out = 0;
    pk_status status = pk_schedule_sparsity(&s, step, &out);
    return status == PK_OK ? PyFloat_FromDouble(out) : raise_status(status);
}

/* schedule_init(schedule=None) -> dict: pk_schedule_init's fields, those the dict gives replaced. */
static PyObject *py_schedule_init(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"schedule", NULL};
    pk_schedule s;
    PyObject *given = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|O", kwlist, &given) || !to_schedule(given, &s)) return NULL;
    return Py_BuildValue("{s:i,s:L,s:L,s:L,s:d,s:d}", "kind", (int)s.kind, "begin", (long long)s.begin, "end",
                         (long long)s.end, "frequency", (long long)s.frequency, "initial_sparsity", s.initial_sparsity,
                         "final_sparsity", s.final_sparsity);
}

typedef struct pruner_capsule {
    pk_pruner *pruner;
    matrix_list weights; /* the weights' buffers, held while the pruner lives */
} pruner_capsule;

static void pruner_capsule_close(pruner_capsule *c) {
    pk_pruner_free(c->pruner);
    c->pruner = NULL;
    matrix_list_release(&c->weights);
}

static void pruner_capsule_destroy(PyObject *capsule) {
    pruner_capsule *c = (pruner_capsule *)PyCapsule_GetPointer(capsule, "prunekit.pruner");
    if (c) {
        pruner_capsule_close(c);
        PyMem_Free(c);
    }
}

/* O& converter: the pruner handle of a capsule (a closed one is the library's to report). */
static int to_pruner(PyObject *capsule, void *target) {
    pruner_capsule *c = (pruner_capsule *)PyCapsule_GetPointer(capsule, "prunekit.pruner");
    if (!c) return 0;
    *(pk_pruner **)target = c->pruner;
    return 1;
}

/* pruner_create(weights [writable matrix], criteria [criterion], selection, schedule,
 *               layer_targets=None, **pk_pruner_options fields) -> capsule: pk_pruner_create. */
static const option_field pruner_fields[] = {
    FIELD(pk_pruner_options, decay_steps, 'L'), FIELD(pk_pruner_options, gradient_momentum, 'd'),
    FIELD(pk_pruner_options, num_threads, 'i'), FIELD(pk_pruner_options, soft_temperature, 'd'), {NULL, 0, 0}};

static PyObject *py_pruner_create(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"weights", "criteria", "selection", "schedule", "layer_targets", NULL};
    pk_pruner_options o;
    pk_pruner_options_init(&o);
    matrix_list w;
    criterion_list c;
    pk_selection sel;
    pk_schedule schedule;
    Py_buffer targets = {0};
    if (!parse_with_options(args, kwargs, pruner_fields, &o, "O&O&O&O&|z*", kwlist, to_writable_matrices, &w, to_criteria,
                            &c, to_selection, &sel, to_schedule, &schedule, &targets))
        return NULL;
    pruner_capsule *capsule = (pruner_capsule *)slots(1, sizeof(pruner_capsule));
    PyObject *result = NULL;
    if (capsule && c.count != w.count) {
        PyErr_SetString(PyExc_ValueError, "one criterion per layer is needed");
    } else if (capsule && (!targets.buf || check_size(&targets, w.count * 8, "targets"))) {
        pk_status status = pk_pruner_create(w.plain, (int64_t)w.count, c.plain, &sel, &schedule,
                                            (const double *)targets.buf, &o, &capsule->pruner);
        if (status == PK_OK) {
            capsule->weights = w; /* the capsule holds the buffers from now on */
            memset(&w, 0, sizeof(w));
            result = PyCapsule_New(capsule, "prunekit.pruner", pruner_capsule_destroy);
            if (result) capsule = NULL;
        } else {
            raise_status(status);
        }
    }
    if (capsule) {
        pruner_capsule_close(capsule);
        PyMem_Free(capsule);
    }
    matrix_list_release(&w);
    criterion_list_release(&c);
    PyBuffer_Release(&targets);
    return result;
}

/* pruner_step(pruner, step, gradients=None [matrix]): pk_pruner_step. */
static PyObject *py_pruner_step(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"pruner", "step", "gradients", NULL};
    pk_pruner *pruner;
    long long step;
    matrix_list g = {0, NULL, NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&L|O&", kwlist, to_pruner, &pruner, &step, to_matrices, &g)) return NULL;
    pk_status status;
    UNLOCKED(status = pk_pruner_step(pruner, step, g.plain));
    matrix_list_release(&g);
    return none_or_raise(status);
}

/* pruner_mask(pruner, layer, mask_out uint8) and pruner_factors(pruner, layer, factors_out float32):
 * pk_pruner_mask and pk_pruner_factors, which check the length they are given. */
static PyObject *pruner_read(PyObject *args, PyObject *kwargs, int factors) {
    static char *mask_kwlist[] = {"pruner", "layer", "mask_out", NULL};
    static char *factors_kwlist[] = {"pruner", "layer", "factors_out", NULL};
    pk_pruner *pruner;
    long long layer;
    Py_buffer out = {0};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&Lw*", factors ? factors_kwlist : mask_kwlist, to_pruner, &pruner,
                                     &layer, &out))
        return NULL;
    pk_status status = factors ? pk_pruner_factors(pruner, layer, (float *)out.buf, (int64_t)(out.len / 4))
                               : pk_pruner_mask(pruner, layer, (uint8_t *)out.buf, (int64_t)out.len);
    PyBuffer_Release(&out);
    return none_or_raise(status);
}

static PyObject *py_pruner_mask(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kwargs) {
    return pruner_read(args, kwargs, 0);
}

static PyObject *py_pruner_factors(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kwargs) {
    return pruner_read(args, kwargs, 1);
}

/* pruner_soft_mask(pruner, layer, mask_out float32, derivative_out=None float32): pk_pruner_soft_mask. */
static PyObject *py_pruner_soft_mask(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"pruner", "layer", "mask_out", "derivative_out", NULL};
    pk_pruner *pruner;
    long long layer;
    Py_buffer out = {0}, deriv = {0};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&Lw*|z*", kwlist, to_pruner, &pruner, &layer, &out, &deriv)) return NULL;
    PyObject *result = NULL;
    if (deriv.buf && deriv.len != out.len) {
        PyErr_SetString(PyExc_ValueError, "derivative buffer differs in size from the mask buffer");
    } else {
        pk_status status = pk_pruner_soft_mask(pruner, layer, (float *)out.buf, (float *)deriv.buf, (int64_t)(out.len / 4));
        result = none_or_raise(status);
    }
    release(&out, &deriv, NULL);
    return result;
}

/* pruner_serialize(pruner) -> bytes: pk_pruner_serialized_size then pk_pruner_serialize. */
static PyObject *py_pruner_serialize(PyObject *Py_UNUSED(self), PyObject *capsule) {
    pk_pruner *pruner;
    return to_pruner(capsule, &pruner) ? pruner_bytes(pruner) : NULL;
}

/* pruner_restore(pruner, data): pk_pruner_restore. */
static PyObject *py_pruner_restore(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"pruner", "data", NULL};
    pk_pruner *pruner;
    Py_buffer b = {0};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&y*", kwlist, to_pruner, &pruner, &b)) return NULL;
    pk_status status;
    UNLOCKED(status = pk_pruner_restore(pruner, b.buf, (size_t)b.len));
    PyBuffer_Release(&b);
    return none_or_raise(status);
}

/* pruner_free(pruner): pk_pruner_free now (and the weights' buffers let go); later calls raise. */
static PyObject *py_pruner_free(PyObject *Py_UNUSED(self), PyObject *capsule) {
    pruner_capsule *c = (pruner_capsule *)PyCapsule_GetPointer(capsule, "prunekit.pruner");
    if (!c) return NULL;
    pruner_capsule_close(c);
    Py_RETURN_NONE;
}

/* soft_mask(weights, selection, temperature, mask_out float32, derivative_out=None float32): pk_soft_mask. */
static PyObject *py_soft_mask(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"weights", "selection", "temperature", "mask_out", "derivative_out", NULL};
    matrix_arg w;
    pk_selection sel;
    double temperature;
    Py_buffer mask = {0}, deriv = {0};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&O&dw*|z*", kwlist, to_matrix, &w, to_selection, &sel, &temperature,
                                     &mask, &deriv))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t bytes = (Py_ssize_t)(w.matrix.rows * w.matrix.cols * 4);
    if (check_size(&mask, bytes, "mask") && (!deriv.buf || check_size(&deriv, bytes, "derivative")))
        CALL_INTO(result, pk_soft_mask(&w.matrix, &sel, temperature, (float *)mask.buf, (float *)deriv.buf));
    release(&w.view, &mask, &deriv, NULL);
    return result;
}

/* A Python callable behind a C callback: it runs with the GIL taken back for the call; an
 * exception (or a result that is not a float) is kept and the callback returns 1, so the library
 * unwinds with PK_ERROR_CANCELLED and the exception is raised after it has returned. */
typedef struct callback_context {
    PyObject *callable;
    PyThreadState *thread;
    PyObject *type, *value, *traceback;
} callback_context;

static int callback_finish(callback_context *ctx, PyObject *answer, double *out) {
    int code = 0;
    if (answer) {
        double v = PyFloat_AsDouble(answer);
        Py_DECREF(answer);
        if (v == -1.0 && PyErr_Occurred()) code = 1;
        else *out = v;
    } else {
        code = 1;
    }
    if (code) PyErr_Fetch(&ctx->type, &ctx->value, &ctx->traceback);
    ctx->thread = PyEval_SaveThread();
    return code;
}

static int evaluate_trampoline(void *user_data, const uint8_t *keep, int64_t count, double *cost_out) {
    callback_context *ctx = (callback_context *)user_data;
    PyEval_RestoreThread(ctx->thread);
    PyObject *bytes = PyBytes_FromStringAndSize((const char *)keep, (Py_ssize_t)count);
    PyObject *answer = bytes ? PyObject_CallOneArg(ctx->callable, bytes) : NULL;
    Py_XDECREF(bytes);
    return callback_finish(ctx, answer, cost_out);
}

static int sensitivity_trampoline(void *user_data, int64_t layer, double ratio, double *damage_out) {
    callback_context *ctx = (callback_context *)user_data;
    PyEval_RestoreThread(ctx->thread);
    PyObject *answer = PyObject_CallFunction(ctx->callable, "Ld", (long long)layer, ratio);
    return callback_finish(ctx, answer, damage_out);
}

static PyObject *callback_result(callback_context *ctx, pk_status status, PyObject *success) {
    if (ctx->type) {
        Py_XDECREF(success);
        PyErr_Restore(ctx->type, ctx->value, ctx->traceback);
        return NULL;
    }
    if (status != PK_OK) {
        Py_XDECREF(success);
        return raise_status(status);
    }
    return success;
}

/* progressive_structures(groups, evaluate, keep_out, protected_out, scores=None,
 *                        **pk_structure_options and pk_progressive_options fields)
 * -> (pruned, evaluations, accepted, rejected, stop, baseline cost, final cost) */
static const option_field progressive_fields[] = {
    FIELD(pk_progressive_options, target_ratio, 'd'), FIELD(pk_progressive_options, step_ratio, 'd'),
    FIELD(pk_progressive_options, tolerance, 'd'), {NULL, 0, 0}};

static PyObject *py_progressive_structures(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"groups", "evaluate", "keep_out", "protected_out", "scores", NULL};
    pk_structure_options o;
    pk_structure_options_init(&o);
    pk_progressive_options p;
    pk_progressive_options_init(&p);
    PyObject *rest = take_options(kwargs, structure_fields, &o);
    PyObject *list, *callable;
    Py_buffer keep = {0}, prot = {0}, given = {0};
    int parsed = rest && parse_with_options(args, rest, progressive_fields, &p, "OOw*w*|z*", kwlist, &list, &callable, &keep,
                                            &prot, &given);
    Py_XDECREF(rest);
    if (!parsed) return NULL;
    groups_arg l;
    PyObject *result = NULL;
    if (groups_take(list, 1, &l)) {
        o.scores = (const double *)given.buf;
        pk_progressive_result r;
        memset(&r, 0, sizeof(r));
        callback_context ctx = {callable, NULL, NULL, NULL, NULL};
        ctx.thread = PyEval_SaveThread();
        pk_status status = pk_progressive_structures(l.plain, (int64_t)l.count, &o, &p, evaluate_trampoline, &ctx,
                                                     (uint8_t *)keep.buf, (uint8_t *)prot.buf, &r);
        PyEval_RestoreThread(ctx.thread);
        PyObject *success = status == PK_OK ? Py_BuildValue("(LLLLidd)", (long long)r.pruned, (long long)r.evaluations,
                                                            (long long)r.accepted, (long long)r.rejected, (int)r.stop,
                                                            r.baseline_cost, r.final_cost)
                                            : NULL;
        result = callback_result(&ctx, status, success);
        groups_release(&l);
    }
    release(&keep, &prot, &given, NULL);
    return result;
}

/* sensitivity_ratios(sizes int64, probes float64, target, damage, ratios_out, counts_out): pk_sensitivity_ratios. */
static PyObject *py_sensitivity_ratios(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"sizes", "probes", "target", "damage", "ratios_out", "counts_out", NULL};
    Py_buffer sizes = {0}, probes = {0}, ratios = {0}, counts = {0};
    double target;
    PyObject *callable, *result = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*y*dOw*w*", kwlist, &sizes, &probes, &target, &callable, &ratios,
                                     &counts))
        return NULL;
    int64_t layers = (int64_t)(sizes.len / 8);
    if (check_size(&ratios, (Py_ssize_t)(layers * 8), "ratios") && check_size(&counts, (Py_ssize_t)(layers * 8), "counts")) {
        callback_context ctx = {callable, NULL, NULL, NULL, NULL};
        ctx.thread = PyEval_SaveThread();
        pk_status status = pk_sensitivity_ratios((const int64_t *)sizes.buf, layers, (const double *)probes.buf,
                                                 (int64_t)(probes.len / 8), target, sensitivity_trampoline, &ctx,
                                                 (double *)ratios.buf, (int64_t *)counts.buf);
        PyEval_RestoreThread(ctx.thread);
        result = callback_result(&ctx, status, status == PK_OK ? Py_NewRef(Py_None) : NULL);
    }
    release(&sizes, &probes, &ratios, &counts, NULL);
    return result;
}

/* Every function takes keyword arguments (KW) except version, pruner_serialize and pruner_free. */
#define KW(name) {#name, (PyCFunction)(void (*)(void))py_##name, METH_VARARGS | METH_KEYWORDS, NULL}
static PyMethodDef methods[] = {
    KW(score), KW(mask), KW(mask_layers), KW(apply_mask), KW(mask_sparsity), KW(sparsegpt), KW(reconstruct),
    KW(prune_columns), KW(admm), KW(refine_mask), KW(channel_permutation), KW(outlier_ratio), KW(compensate_bias),
    KW(output_error), KW(allocate_sparsity), KW(count_nonzero), KW(export_24), KW(import_24), KW(export_csr),
    KW(import_csr), KW(export_bitmask), KW(import_bitmask), KW(select_structures), KW(compact_group),
    KW(apply_structures), KW(permute_group), KW(structure_mask), KW(group_layout), KW(compact_group_data_free),
    KW(key_channels), KW(low_rank), KW(top_channels), KW(gather), KW(random_channel_mask), KW(schedule_init), KW(schedule_sparsity),
    KW(pruner_create), KW(pruner_step), KW(pruner_mask), KW(pruner_factors), KW(pruner_soft_mask), KW(pruner_restore),
    KW(soft_mask), KW(progressive_structures), KW(sensitivity_ratios),
    {"version", py_version, METH_NOARGS, NULL},
    {"pruner_serialize", py_pruner_serialize, METH_O, NULL},
    {"pruner_free", py_pruner_free, METH_O, NULL},
    {NULL, NULL, 0, NULL},
};

/* The header's enum values, exported without their PK_ prefix (CRITERION_WANDA, SCOPE_NM, ...):
 * the Python tables are built from these, never copied by hand. */
#define CONSTANT(name) {#name, PK_##name}
static const struct {
    const char *name;
    int value;
} constants[] = {
    CONSTANT(DTYPE_FLOAT32), CONSTANT(DTYPE_FLOAT64), CONSTANT(DTYPE_FLOAT16), CONSTANT(DTYPE_BFLOAT16),
    CONSTANT(CRITERION_MAGNITUDE), CONSTANT(CRITERION_RANDOM), CONSTANT(CRITERION_WANDA), CONSTANT(CRITERION_STADE),
    CONSTANT(CRITERION_TAYLOR), CONSTANT(CRITERION_SCORES),
    CONSTANT(SCOPE_ROW), CONSTANT(SCOPE_LAYER), CONSTANT(SCOPE_GLOBAL), CONSTANT(SCOPE_NM),
    CONSTANT(PRECISION_FLOAT32), CONSTANT(PRECISION_FLOAT64),
    CONSTANT(AXIS_ROWS), CONSTANT(AXIS_COLS), CONSTANT(AXIS_BLOCKS),
    CONSTANT(STRUCTURE_L1), CONSTANT(STRUCTURE_L2), CONSTANT(STRUCTURE_MEAN_ABS_ACTIVATION),
    CONSTANT(STRUCTURE_NONZERO_FRACTION),
    CONSTANT(REDUCE_SUM), CONSTANT(REDUCE_MEAN), CONSTANT(REDUCE_MAX),
    CONSTANT(NORMALIZE_NONE), CONSTANT(NORMALIZE_MEAN), CONSTANT(NORMALIZE_MAX), CONSTANT(NORMALIZE_SUM),
    CONSTANT(NORMALIZE_STANDARD),
    CONSTANT(SELECT_PER_GROUP), CONSTANT(SELECT_GLOBAL), CONSTANT(SELECT_UNIFORM), CONSTANT(SELECT_THRESHOLD),
    CONSTANT(ACTIVATION_RELU), CONSTANT(ACTIVATION_IDENTITY),
    CONSTANT(SCHEDULE_ONESHOT), CONSTANT(SCHEDULE_LINEAR), CONSTANT(SCHEDULE_CUBIC), CONSTANT(SCHEDULE_EXPONENTIAL),
    CONSTANT(PROGRESSIVE_REACHED_TARGET), CONSTANT(PROGRESSIVE_NO_ACCEPTABLE_STEP),
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_prunekit", "The C layer of prunekit.", -1, methods,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__prunekit(void) {
    /* The loaded library must be the one this extension was compiled against. */
    if (pk_version_number() != PK_VERSION_NUMBER) {
        PyErr_Format(PyExc_ImportError, "prunekit: the extension was built against libprunekit %s but loaded %s",
                     PK_VERSION_STRING, pk_version_string());
        return NULL;
    }
    if (PyType_Ready(&StatsType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    PruneKitError = PyErr_NewException("prunekit.PruneKitError", NULL, NULL);
    if (!PruneKitError || PyModule_AddObjectRef(m, "PruneKitError", PruneKitError) < 0 ||
        PyModule_AddObjectRef(m, "Stats", (PyObject *)&StatsType) < 0 ||
        PyModule_AddIntConstant(m, "HEADER_VERSION", PK_VERSION_NUMBER) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    for (size_t i = 0; i < sizeof(constants) / sizeof(constants[0]); i++)
        if (PyModule_AddIntConstant(m, constants[i].name, constants[i].value) < 0) {
            Py_DECREF(m);
            return NULL;
        }
    return m;
}
