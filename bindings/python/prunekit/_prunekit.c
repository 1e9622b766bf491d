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

static int set_field(PyObject *value, const option_field *f, void *target) {
    char *at = (char *)target + f->offset;
    if (f->type == 'd') {
        double v = PyFloat_AsDouble(value);
        if (v == -1.0 && PyErr_Occurred()) return 0;
        memcpy(at, &v, sizeof v);
    } else if (f->type == 'K') {
        unsigned long long v = PyLong_AsUnsignedLongLong(value);
        if (v == (unsigned long long)-1 && PyErr_Occurred()) return 0;
        uint64_t u = (uint64_t)v;
        memcpy(at, &u, sizeof u);
    } else {
        long long v = PyLong_AsLongLong(value);
        if (v == -1 && PyErr_Occurred()) return 0;
        if (f->type == 'i') {
            if (v < INT32_MIN || v > INT32_MAX) {
                PyErr_SetString(PyExc_OverflowError, "does not fit in 32 bits");
                return 0;
            }
            int32_t i = (int32_t)v;
            memcpy(at, &i, sizeof i);
        } else {
            int64_t i = (int64_t)v;
            memcpy(at, &i, sizeof i);
        }
    }
    return 1;
}

/* Sets the fields of *target that `kwargs` names (None: not given) and returns a new dict of the
 * other keyword arguments (NULL with an exception on a value that does not convert). */
static PyObject *take_options(PyObject *kwargs, const option_field *fields, void *target) {
    PyObject *rest = kwargs ? PyDict_Copy(kwargs) : PyDict_New();
    if (!rest) return NULL;
    for (const option_field *f = fields; f->name; f++) {
        PyObject *value = PyDict_GetItemString(rest, f->name);
        if (!value) continue;
        if (value != Py_None && !set_field(value, f, target)) {
            if (PyErr_ExceptionMatches(PyExc_OverflowError)) {
                PyErr_Clear();
                PyErr_Format(PyExc_ValueError, "%s = %R is out of range", f->name, value);
            } else if (PyErr_ExceptionMatches(PyExc_TypeError)) {
                PyErr_Clear();
                PyErr_Format(PyExc_TypeError, "%s: expected %s, got %s", f->name, f->type == 'd' ? "a number" : "an integer",
                             Py_TYPE(value)->tp_name);
            }
            Py_DECREF(rest);
            return NULL;
        }
        if (PyDict_DelItemString(rest, f->name) < 0) {
            Py_DECREF(rest);
            return NULL;
        }
    }
    return rest;
}

/* Fails with TypeError when a dict argument has keys no field took. */
static int no_more_keys(PyObject *rest, const char *what) {
    if (PyDict_GET_SIZE(rest) == 0) return 1;
    PyObject *keys = PyDict_Keys(rest);
    if (keys) PyErr_Format(PyExc_TypeError, "%s: unknown keys %R", what, keys);
    Py_XDECREF(keys);
    return 0;
}

/* A pk_matrix over a 2-D buffer whose rows are contiguous and aligned (any row stride >= cols):
 * format f, d, e or H (uint16, the bit patterns prunekit hands bfloat16 over as). */
typedef struct matrix_arg {
    Py_buffer view;
    pk_matrix matrix;
} matrix_arg;

static void matrix_release(matrix_arg *a) {
    if (a->view.obj) PyBuffer_Release(&a->view);
    a->view.obj = NULL;
}

static int matrix_take(PyObject *object, matrix_arg *a, int flags) {
    if (!object) { /* cleanup after a later argument failed */
        matrix_release(a);
        return 1;
    }
    memset(a, 0, sizeof(*a));
    if (PyObject_GetBuffer(object, &a->view, flags | PyBUF_STRIDES | PyBUF_FORMAT) != 0) return 0;
    const Py_buffer *v = &a->view;
    const char *format = v->format[0] == '@' || v->format[0] == '=' ? v->format + 1 : v->format;
    int dtype = -1;
    if (format[0] && !format[1])
        dtype = format[0] == 'f' ? PK_DTYPE_FLOAT32 : format[0] == 'd' ? PK_DTYPE_FLOAT64
              : format[0] == 'e' ? PK_DTYPE_FLOAT16 : format[0] == 'H' ? PK_DTYPE_BFLOAT16 : -1;
    if (v->ndim != 2 || dtype < 0) {
        PyErr_Format(PyExc_TypeError, "expected a 2-D float32, float64, float16 or bfloat16 array, got %d-D '%s'",
                     v->ndim, v->format);
        matrix_release(a);
        return 0;
    }
    Py_ssize_t item = v->itemsize, rows = v->shape[0], cols = v->shape[1];
    Py_ssize_t row_bytes = rows > 1 ? v->strides[0] : cols * item;
    if ((cols > 1 && v->strides[1] != item) || row_bytes % item || row_bytes / item < cols ||
        (uintptr_t)v->buf % (uintptr_t)item) {
        PyErr_Format(PyExc_ValueError, "rows must be contiguous and aligned (strides %zd, %zd)", v->strides[0],
                     v->strides[1]);
        matrix_release(a);
        return 0;
    }
    pk_matrix m = {v->buf, rows, cols, row_bytes / item, dtype, 0};
    a->matrix = m;
    return Py_CLEANUP_SUPPORTED;
}

static int to_matrix(PyObject *object, void *a) {
    if (object == Py_None) {
        PyErr_SetString(PyExc_TypeError, "expected a 2-D array, got None");
        return 0;
    }
    return matrix_take(object, (matrix_arg *)a, 0);
}
static int to_writable_matrix(PyObject *object, void *a) {
    if (object == Py_None) {
        PyErr_SetString(PyExc_TypeError, "expected a 2-D array, got None");
        return 0;
    }
    return matrix_take(object, (matrix_arg *)a, PyBUF_WRITABLE);
}

/* A criterion from a dict {kind, seed, features, gradient} (None = magnitude). features: a float32
 * or float64 vector (rounded to float32 here, to nearest), or a Stats, whose standard deviations
 * STADE takes and whose L2 norms every other kind takes (read through the object's own methods,
 * so a Stats view such as PermutedStats gives its own). gradient: a matrix. */
typedef struct criterion_arg {
    pk_criterion criterion;
    matrix_arg gradient;
    Py_buffer features;
    float *rounded; /* feature values this extension rounded to float32 (PyMem) */
} criterion_arg;

static const option_field criterion_fields[] = {
    FIELD(pk_criterion, kind, 'i'), FIELD(pk_criterion, seed, 'K'), {NULL, 0, 0}};

static PyTypeObject StatsType;

static void criterion_release(criterion_arg *c) {
    matrix_release(&c->gradient);
    if (c->features.obj) PyBuffer_Release(&c->features);
    c->features.obj = NULL;
    PyMem_Free(c->rounded);
    c->rounded = NULL;
}

/* Feature values from a Stats (through its _std / _l2_norm methods) into c->rounded. */
static int criterion_stats_features(PyObject *stats, criterion_arg *c) {
    PyObject *count = PyObject_GetAttrString(stats, "features");
    long long n = count ? PyLong_AsLongLong(count) : -1;
    Py_XDECREF(count);
    if (n < 0 || PyErr_Occurred()) return 0;
    double *values = (double *)PyMem_Calloc((size_t)(n > 0 ? n : 1), sizeof(double));
    c->rounded = (float *)PyMem_Calloc((size_t)(n > 0 ? n : 1), sizeof(float));
    PyObject *bytes = values ? PyMemoryView_FromMemory((char *)values, (Py_ssize_t)n * 8, PyBUF_WRITE) : NULL;
    PyObject *view = bytes ? PyObject_CallMethod(bytes, "cast", "s", "d") : NULL;
    Py_XDECREF(bytes);
    PyObject *done = view ? PyObject_CallMethod(stats, c->criterion.kind == PK_CRITERION_STADE ? "_std" : "_l2_norm",
                                                "O", view)
                          : NULL;
    if (!values || !c->rounded) PyErr_NoMemory();
    int ok = done != NULL && c->rounded != NULL;
    for (long long i = 0; ok && i < n; i++) c->rounded[i] = (float)values[i];
    Py_XDECREF(done);
    Py_XDECREF(view);
    PyMem_Free(values);
    c->criterion.feature_values = c->rounded;
    c->criterion.feature_count = (int64_t)n;
    return ok;
}

static int criterion_vector_features(PyObject *object, criterion_arg *c) {
    if (PyObject_GetBuffer(object, &c->features, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) != 0) return 0;
    const Py_buffer *v = &c->features;
    const char *format = v->format[0] == '@' || v->format[0] == '=' ? v->format + 1 : v->format;
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
    c->rounded = (float *)PyMem_Calloc((size_t)(n > 0 ? n : 1), sizeof(float));
    if (!c->rounded) {
        PyErr_NoMemory();
        return 0;
    }
    for (Py_ssize_t i = 0; i < n; i++) c->rounded[i] = (float)((const double *)v->buf)[i];
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
    if (!PyDict_Check(object)) {
        PyErr_Format(PyExc_TypeError, "criterion: expected a dict, got %s", Py_TYPE(object)->tp_name);
        return 0;
    }
    PyObject *rest = take_options(object, criterion_fields, &c->criterion);
    int ok = rest != NULL;
    /* borrowed from `object`, which the caller holds */
    PyObject *features = PyDict_GetItemString(object, "features"), *gradient = PyDict_GetItemString(object, "gradient");
    if (ok && features) ok = PyDict_DelItemString(rest, "features") == 0;
    if (ok && gradient) ok = PyDict_DelItemString(rest, "gradient") == 0;
    ok = ok && no_more_keys(rest, "criterion");
    Py_XDECREF(rest);
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

/* A selection from a dict of pk_selection's fields (None = the defaults). */
static const option_field selection_fields[] = {
    FIELD(pk_selection, scope, 'i'), FIELD(pk_selection, num_threads, 'i'), FIELD(pk_selection, sparsity, 'd'),
    FIELD(pk_selection, n, 'i'), FIELD(pk_selection, m, 'i'), {NULL, 0, 0}};

static int to_selection(PyObject *object, void *target) {
    pk_selection *s = (pk_selection *)target;
    pk_selection_init(s);
    if (object == Py_None) return 1;
    if (!PyDict_Check(object)) {
        PyErr_Format(PyExc_TypeError, "selection: expected a dict, got %s", Py_TYPE(object)->tp_name);
        return 0;
    }
    PyObject *rest = take_options(object, selection_fields, s);
    int ok = rest && no_more_keys(rest, "selection");
    Py_XDECREF(rest);
    return ok;
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

static void hessian_release(hessian_arg *h) {
    if (h->view.obj) PyBuffer_Release(&h->view);
    h->view.obj = NULL;
}

static int to_hessian(PyObject *object, void *target) {
    hessian_arg *h = (hessian_arg *)target;
    if (!object) {
        hessian_release(h);
        return 1;
    }
    memset(h, 0, sizeof(*h));
    if (PyObject_GetBuffer(object, &h->view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) != 0) return 0;
    const Py_buffer *v = &h->view;
    const char *format = v->format[0] == '@' || v->format[0] == '=' ? v->format + 1 : v->format;
    if (v->ndim != 2 || v->shape[0] != v->shape[1] || strcmp(format, "d")) {
        PyErr_Format(PyExc_ValueError, "hessian: expected a square float64 matrix, got %d-D '%s'%s", v->ndim, v->format,
                     v->ndim == 2 ? " of another shape" : "");
        hessian_release(h);
        return 0;
    }
    h->size = (int64_t)v->shape[0];
    return Py_CLEANUP_SUPPORTED;
}

/* The result of a call that returns nothing but its status. */
static PyObject *none_or_raise(pk_status status) { return status == PK_OK ? Py_NewRef(Py_None) : raise_status(status); }

/* Checks that a buffer holds at least `bytes` bytes. */
static int check_size(const Py_buffer *b, Py_ssize_t bytes, const char *name) {
    if (b->len < bytes) {
        PyErr_Format(PyExc_ValueError, "%s buffer has %zd bytes, %zd needed", name, b->len, bytes);
        return 0;
    }
    return 1;
}

static Py_ssize_t dtype_size(int dtype) {
    return dtype == PK_DTYPE_FLOAT64 ? 8 : dtype == PK_DTYPE_FLOAT32 ? 4 : 2;
}

static Py_ssize_t matrix_bytes(int64_t rows, int64_t cols, int64_t stride, int dtype) {
    if (rows <= 0 || cols <= 0 || stride < cols) return 0; /* the library reports these */
    return (Py_ssize_t)(((rows - 1) * stride + cols) * dtype_size(dtype));
}

/* A criterion from (kind, features buffer or None, gradient buffer or None, gradient dtype,
 * gradient stride, seed). Buffers stay owned by the caller's Py_buffer structs. */
typedef struct criterion_args {
    pk_criterion criterion;
    pk_matrix gradient;
} criterion_args;

static void fill_criterion(criterion_args *c, int kind, const Py_buffer *features, const Py_buffer *gradient,
                           int64_t rows, int64_t cols, int gradient_dtype, int64_t gradient_stride, unsigned long long seed) {
    pk_criterion_init(&c->criterion);
    c->criterion.kind = kind;
    c->criterion.seed = (uint64_t)seed;
    if (features && features->buf) {
        c->criterion.feature_values = (const float *)features->buf;
        c->criterion.feature_count = (int64_t)(features->len / (Py_ssize_t)sizeof(float));
    }
    if (gradient && gradient->buf) {
        c->gradient.data = gradient->buf;
        c->gradient.rows = rows;
        c->gradient.cols = cols;
        c->gradient.row_stride = gradient_stride;
        c->gradient.dtype = gradient_dtype;
        c->gradient.reserved = 0;
        c->criterion.gradient = &c->gradient;
    }
}

static void fill_selection(pk_selection *s, int scope, double sparsity, int n, int m, int threads) {
    pk_selection_init(s);
    s->scope = scope;
    s->sparsity = sparsity;
    s->n = n;
    s->m = m;
    s->num_threads = threads;
}

/* score(weights, criterion, scores_out): pk_score. */
static PyObject *py_score(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)self;
    static char *kwlist[] = {"weights", "criterion", "scores_out", NULL};
    matrix_arg w;
    criterion_arg c;
    Py_buffer out = {0};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&O&w*", kwlist, to_matrix, &w, to_criterion, &c, &out)) return NULL;
    PyObject *result = NULL;
    if (check_size(&out, (Py_ssize_t)(w.matrix.rows * w.matrix.cols * 4), "scores")) {
        pk_status status;
        Py_BEGIN_ALLOW_THREADS
        status = pk_score(&w.matrix, &c.criterion, (float *)out.buf);
        Py_END_ALLOW_THREADS
        result = none_or_raise(status);
    }
    matrix_release(&w);
    criterion_release(&c);
    PyBuffer_Release(&out);
    return result;
}

/* mask(weights, criterion, selection, mask_out): pk_mask. */
static PyObject *py_mask(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)self;
    static char *kwlist[] = {"weights", "criterion", "selection", "mask_out", NULL};
    matrix_arg w;
    criterion_arg c;
    pk_selection sel;
    Py_buffer out = {0};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&O&O&w*", kwlist, to_matrix, &w, to_criterion, &c, to_selection,
                                     &sel, &out))
        return NULL;
    PyObject *result = NULL;
    if (check_size(&out, (Py_ssize_t)(w.matrix.rows * w.matrix.cols), "mask")) {
        pk_status status;
        Py_BEGIN_ALLOW_THREADS
        status = pk_mask(&w.matrix, &c.criterion, &sel, (uint8_t *)out.buf);
        Py_END_ALLOW_THREADS
        result = none_or_raise(status);
    }
    matrix_release(&w);
    criterion_release(&c);
    PyBuffer_Release(&out);
    return result;
}

/* mask_layers(weights [matrix], criteria [criterion], selection, masks_out [writable buffer]):
 * pk_mask_layers. The three lists have one entry per layer. */
static PyObject *py_mask_layers(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)self;
    static char *kwlist[] = {"weights", "criteria", "selection", "masks_out", NULL};
    PyObject *weights, *criteria, *outs;
    pk_selection sel;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!O!O&O!", kwlist, &PyList_Type, &weights, &PyList_Type, &criteria,
                                     to_selection, &sel, &PyList_Type, &outs))
        return NULL;
    Py_ssize_t count = PyList_GET_SIZE(weights);
    if (PyList_GET_SIZE(criteria) != count || PyList_GET_SIZE(outs) != count) {
        PyErr_SetString(PyExc_ValueError, "one criterion and one mask per layer are needed");
        return NULL;
    }
    size_t slots = (size_t)(count > 0 ? count : 1);
    matrix_arg *mats = (matrix_arg *)PyMem_Calloc(slots, sizeof(matrix_arg));
    criterion_arg *crits = (criterion_arg *)PyMem_Calloc(slots, sizeof(criterion_arg));
    Py_buffer *masks = (Py_buffer *)PyMem_Calloc(slots, sizeof(Py_buffer));
    pk_matrix *plain = (pk_matrix *)PyMem_Calloc(slots, sizeof(pk_matrix));
    const pk_criterion **crit_ptrs = (const pk_criterion **)PyMem_Calloc(slots, sizeof(pk_criterion *));
    uint8_t **mask_ptrs = (uint8_t **)PyMem_Calloc(slots, sizeof(uint8_t *));
    PyObject *result = NULL;
    Py_ssize_t taken = 0;
    if (!mats || !crits || !masks || !plain || !crit_ptrs || !mask_ptrs) {
        PyErr_NoMemory();
        goto done;
    }
    for (; taken < count; taken++) {
        if (!to_matrix(PyList_GET_ITEM(weights, taken), &mats[taken])) goto done;
        if (!to_criterion(PyList_GET_ITEM(criteria, taken), &crits[taken])) {
            matrix_release(&mats[taken]);
            goto done;
        }
        if (PyObject_GetBuffer(PyList_GET_ITEM(outs, taken), &masks[taken], PyBUF_WRITABLE) != 0 ||
            !check_size(&masks[taken], (Py_ssize_t)(mats[taken].matrix.rows * mats[taken].matrix.cols), "mask")) {
            taken++;
            goto done;
        }
        plain[taken] = mats[taken].matrix;
        crit_ptrs[taken] = &crits[taken].criterion;
        mask_ptrs[taken] = (uint8_t *)masks[taken].buf;
    }
    {
        pk_status status;
        Py_BEGIN_ALLOW_THREADS
        status = pk_mask_layers(plain, crit_ptrs, (int64_t)count, &sel, mask_ptrs);
        Py_END_ALLOW_THREADS
        result = none_or_raise(status);
    }
done:
    for (Py_ssize_t i = 0; i < taken; i++) {
        matrix_release(&mats[i]);
        criterion_release(&crits[i]);
        if (masks[i].obj) PyBuffer_Release(&masks[i]);
    }
    PyMem_Free(mats);
    PyMem_Free(crits);
    PyMem_Free(masks);
    PyMem_Free(plain);
    PyMem_Free(crit_ptrs);
    PyMem_Free(mask_ptrs);
    return result;
}

/* apply_mask(weights (writable), mask): pk_apply_mask. */
static PyObject *py_apply_mask(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)self;
    static char *kwlist[] = {"weights", "mask", NULL};
    matrix_arg w;
    Py_buffer mask = {0};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&y*", kwlist, to_writable_matrix, &w, &mask)) return NULL;
    PyObject *result = NULL;
    if (check_size(&mask, (Py_ssize_t)(w.matrix.rows * w.matrix.cols), "mask")) {
        pk_status status;
        Py_BEGIN_ALLOW_THREADS
        status = pk_apply_mask(&w.matrix, (const uint8_t *)mask.buf);
        Py_END_ALLOW_THREADS
        result = none_or_raise(status);
    }
    matrix_release(&w);
    PyBuffer_Release(&mask);
    return result;
}

/* mask_sparsity(mask, rows, cols, row_sparsity_out) -> overall: pk_mask_sparsity. */
static PyObject *py_mask_sparsity(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)self;
    static char *kwlist[] = {"mask", "rows", "cols", "row_sparsity_out", NULL};
    Py_buffer mask = {0}, out = {0};
    long long rows, cols;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*LLw*", kwlist, &mask, &rows, &cols, &out)) return NULL;
    PyObject *result = NULL;
    if (check_size(&mask, (Py_ssize_t)(rows * cols), "mask") && check_size(&out, (Py_ssize_t)(rows * 8), "rows")) {
        double overall = 0;
        pk_status status;
        Py_BEGIN_ALLOW_THREADS
        status = pk_mask_sparsity((const uint8_t *)mask.buf, rows, cols, (double *)out.buf, &overall);
        Py_END_ALLOW_THREADS
        result = status == PK_OK ? PyFloat_FromDouble(overall) : raise_status(status);
    }
    PyBuffer_Release(&mask);
    PyBuffer_Release(&out);
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
static PyObject *py_sparsegpt(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)self;
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
    if (check_size(&mask, (Py_ssize_t)(w.matrix.rows * w.matrix.cols), "mask")) {
        pk_status status;
        Py_BEGIN_ALLOW_THREADS
        status = pk_sparsegpt(&w.matrix, (const double *)h.view.buf, h.size, &o, (uint8_t *)mask.buf, &out.matrix);
        Py_END_ALLOW_THREADS
        result = none_or_raise(status);
    }
    matrix_release(&w);
    hessian_release(&h);
    PyBuffer_Release(&mask);
    matrix_release(&out);
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
        pk_status status;
        Py_BEGIN_ALLOW_THREADS
        status = columns ? pk_prune_columns(&w.matrix, hessian, h.size, flags, &o, &out.matrix)
                         : pk_reconstruct(&w.matrix, hessian, h.size, flags, &o, &out.matrix);
        Py_END_ALLOW_THREADS
        result = none_or_raise(status);
    }
    matrix_release(&w);
    hessian_release(&h);
    PyBuffer_Release(&given);
    matrix_release(&out);
    return result;
}

static PyObject *py_reconstruct(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)self;
    return reconstruct_given(args, kwargs, 0);
}

static PyObject *py_prune_columns(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)self;
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

static PyObject *py_admm(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)self;
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
    if ((!given.buf || check_size(&given, entries, "mask")) && check_size(&mask, entries, "mask_out")) {
        pk_status status;
        Py_BEGIN_ALLOW_THREADS
        status = pk_admm(&w.matrix, (const double *)h.view.buf, h.size, (const uint8_t *)given.buf, &o,
                         (uint8_t *)mask.buf, &out.matrix);
        Py_END_ALLOW_THREADS
        result = none_or_raise(status);
    }
    matrix_release(&w);
    hessian_release(&h);
    PyBuffer_Release(&given);
    PyBuffer_Release(&mask);
    matrix_release(&out);
    return result;
}

/* refine_mask(weights, hessian, mask (refined in place), **pk_swap_options fields) -> swaps made. */
static const option_field swap_fields[] = {
    FIELD(pk_swap_options, scope, 'i'), FIELD(pk_swap_options, n, 'i'), FIELD(pk_swap_options, m, 'i'),
    FIELD(pk_swap_options, max_swaps, 'i'), FIELD(pk_swap_options, candidates, 'i'),
    FIELD(pk_swap_options, num_threads, 'i'), {NULL, 0, 0}};

static PyObject *py_refine_mask(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)self;
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
        Py_BEGIN_ALLOW_THREADS
        status = pk_refine_mask(&w.matrix, (const double *)h.view.buf, h.size, &o, (uint8_t *)mask.buf, &swaps);
        Py_END_ALLOW_THREADS
        result = status == PK_OK ? PyLong_FromLongLong(swaps) : raise_status(status);
    }
    matrix_release(&w);
    hessian_release(&h);
    PyBuffer_Release(&mask);
    return result;
}

/* channel_permutation(weights, criterion, permutation_out int64, **pk_permutation_options fields)
 * -> (kept before, kept after): pk_channel_permutation. */
static const option_field permutation_fields[] = {
    FIELD(pk_permutation_options, n, 'i'), FIELD(pk_permutation_options, m, 'i'),
    FIELD(pk_permutation_options, segment, 'L'), FIELD(pk_permutation_options, max_swaps, 'L'),
    FIELD(pk_permutation_options, time_limit, 'd'), FIELD(pk_permutation_options, num_threads, 'i'), {NULL, 0, 0}};

static PyObject *py_channel_permutation(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)self;
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
        Py_BEGIN_ALLOW_THREADS
        status = pk_channel_permutation(&w.matrix, &c.criterion, &o, (int64_t *)perm.buf, &before, &after);
        Py_END_ALLOW_THREADS
        result = status == PK_OK ? Py_BuildValue("dd", before, after) : raise_status(status);
    }
    matrix_release(&w);
    criterion_release(&c);
    PyBuffer_Release(&perm);
    return result;
}

/* outlier_ratio(weights, criterion, threshold) -> ratio: pk_outlier_ratio. */
static PyObject *py_outlier_ratio(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)self;
    static char *kwlist[] = {"weights", "criterion", "threshold", NULL};
    matrix_arg w;
    criterion_arg c;
    double threshold, ratio = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&O&d", kwlist, to_matrix, &w, to_criterion, &c, &threshold))
        return NULL;
    pk_status status;
    Py_BEGIN_ALLOW_THREADS
    status = pk_outlier_ratio(&w.matrix, &c.criterion, threshold, &ratio);
    Py_END_ALLOW_THREADS
    matrix_release(&w);
    criterion_release(&c);
    return status == PK_OK ? PyFloat_FromDouble(ratio) : raise_status(status);
}

/* allocate_sparsity(sizes int64, importance float64, sparsity, spread, pruned_out int64,
 *                   sparsities_out float64): pk_allocate_sparsity. */
static PyObject *py_allocate_sparsity(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)self;
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
        pk_status status;
        Py_BEGIN_ALLOW_THREADS
        status = pk_allocate_sparsity((const int64_t *)sizes.buf, (const double *)importance.buf, (int64_t)layers, sparsity,
                                      spread, (int64_t *)pruned.buf, (double *)sparsities.buf);
        Py_END_ALLOW_THREADS
        result = none_or_raise(status);
    }
    PyBuffer_Release(&sizes);
    PyBuffer_Release(&importance);
    PyBuffer_Release(&pruned);
    PyBuffer_Release(&sparsities);
    return result;
}

/* compensate_bias(original, pruned, mean float64, bias (1 x rows, writable)): pk_compensate_bias. */
static PyObject *py_compensate_bias(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)self;
    static char *kwlist[] = {"original", "pruned", "mean", "bias", NULL};
    matrix_arg w, p, b;
    Py_buffer mean = {0};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&O&y*O&", kwlist, to_matrix, &w, to_matrix, &p, &mean,
                                     to_writable_matrix, &b))
        return NULL;
    pk_status status;
    Py_BEGIN_ALLOW_THREADS
    status = pk_compensate_bias(&w.matrix, &p.matrix, (const double *)mean.buf, (int64_t)(mean.len / 8), &b.matrix);
    Py_END_ALLOW_THREADS
    matrix_release(&w);
    matrix_release(&p);
    PyBuffer_Release(&mean);
    matrix_release(&b);
    return none_or_raise(status);
}

/* output_error(original, pruned, hessian) -> (error, relative): pk_output_error. */
static PyObject *py_output_error(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)self;
    static char *kwlist[] = {"original", "pruned", "hessian", NULL};
    matrix_arg w, p;
    hessian_arg h;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&O&O&", kwlist, to_matrix, &w, to_matrix, &p, to_hessian, &h))
        return NULL;
    double error = 0, relative = 0;
    pk_status status;
    Py_BEGIN_ALLOW_THREADS
    status = pk_output_error(&w.matrix, &p.matrix, (const double *)h.view.buf, h.size, &error, &relative);
    Py_END_ALLOW_THREADS
    matrix_release(&w);
    matrix_release(&p);
    hessian_release(&h);
    return status == PK_OK ? Py_BuildValue("(dd)", error, relative) : raise_status(status);
}

/* Sparse formats: one function per pk_ call. Exports take the weights and caller-allocated outputs
 * (capacity: the entries columns_out / values_out hold); imports take the stored arrays and the dense
 * output matrix, and check the buffers hold what the library will read. */
static PyObject *py_count_nonzero(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)self;
    static char *kwlist[] = {"weights", NULL};
    matrix_arg w;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&", kwlist, to_matrix, &w)) return NULL;
    int64_t nnz = 0;
    pk_status status;
    Py_BEGIN_ALLOW_THREADS
    status = pk_count_nonzero(&w.matrix, &nnz);
    Py_END_ALLOW_THREADS
    matrix_release(&w);
    return status == PK_OK ? PyLong_FromLongLong(nnz) : raise_status(status);
}

static Py_ssize_t element_size(int32_t dtype) { return dtype == PK_DTYPE_FLOAT64 ? 8 : dtype == PK_DTYPE_FLOAT32 ? 4 : 2; }

/* export_24(weights, values_out, metadata_out) */
static PyObject *py_export_24(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)self;
    static char *kwlist[] = {"weights", "values_out", "metadata_out", NULL};
    matrix_arg w;
    Py_buffer values = {0}, metadata = {0};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&w*w*", kwlist, to_matrix, &w, &values, &metadata)) return NULL;
    const pk_matrix *m = &w.matrix;
    PyObject *result = NULL;
    if (check_size(&values, (Py_ssize_t)(m->rows * (m->cols / 2)) * element_size(m->dtype), "values") &&
        check_size(&metadata, (Py_ssize_t)(m->rows * ((m->cols + 7) / 8)), "metadata")) {
        pk_status status;
        Py_BEGIN_ALLOW_THREADS
        status = pk_export_24(m, values.buf, (uint8_t *)metadata.buf);
        Py_END_ALLOW_THREADS
        result = none_or_raise(status);
    }
    matrix_release(&w);
    PyBuffer_Release(&values);
    PyBuffer_Release(&metadata);
    return result;
}

/* import_24(values, metadata, dense_out) */
static PyObject *py_import_24(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)self;
    static char *kwlist[] = {"values", "metadata", "dense_out", NULL};
    Py_buffer values = {0}, metadata = {0};
    matrix_arg d;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*y*O&", kwlist, &values, &metadata, to_writable_matrix, &d)) return NULL;
    const pk_matrix *m = &d.matrix;
    PyObject *result = NULL;
    if (check_size(&values, (Py_ssize_t)(m->rows * (m->cols / 2)) * element_size(m->dtype), "values") &&
        check_size(&metadata, (Py_ssize_t)(m->rows * ((m->cols + 7) / 8)), "metadata")) {
        pk_status status;
        Py_BEGIN_ALLOW_THREADS
        status = pk_import_24(values.buf, (const uint8_t *)metadata.buf, m);
        Py_END_ALLOW_THREADS
        result = none_or_raise(status);
    }
    PyBuffer_Release(&values);
    PyBuffer_Release(&metadata);
    matrix_release(&d);
    return result;
}

/* export_csr(weights, capacity, row_offsets_out, columns_out, values_out) */
static PyObject *py_export_csr(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)self;
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
        check_size(&values, (Py_ssize_t)capacity * element_size(m->dtype), "values")) {
        pk_status status;
        Py_BEGIN_ALLOW_THREADS
        status = pk_export_csr(m, capacity, (int64_t *)offsets.buf, (int64_t *)columns.buf, values.buf);
        Py_END_ALLOW_THREADS
        result = none_or_raise(status);
    }
    matrix_release(&w);
    PyBuffer_Release(&offsets);
    PyBuffer_Release(&columns);
    PyBuffer_Release(&values);
    return result;
}

/* import_csr(row_offsets, columns, values, dense_out): columns and values must hold
 * row_offsets[rows] entries (the library reads that many). */
static PyObject *py_import_csr(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)self;
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
            check_size(&values, (Py_ssize_t)stored * element_size(m->dtype), "values")) {
            pk_status status;
            Py_BEGIN_ALLOW_THREADS
            status = pk_import_csr((const int64_t *)offsets.buf, (const int64_t *)columns.buf, values.buf, m);
            Py_END_ALLOW_THREADS
            result = none_or_raise(status);
        }
    }
    PyBuffer_Release(&offsets);
    PyBuffer_Release(&columns);
    PyBuffer_Release(&values);
    matrix_release(&d);
    return result;
}

/* export_bitmask(weights, capacity, bits_out, values_out) */
static PyObject *py_export_bitmask(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)self;
    static char *kwlist[] = {"weights", "capacity", "bits_out", "values_out", NULL};
    matrix_arg w;
    long long capacity;
    Py_buffer bits = {0}, values = {0};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&Lw*w*", kwlist, to_matrix, &w, &capacity, &bits, &values)) return NULL;
    const pk_matrix *m = &w.matrix;
    PyObject *result = NULL;
    if (check_size(&bits, (Py_ssize_t)(m->rows * ((m->cols + 7) / 8)), "bits") &&
        check_size(&values, (Py_ssize_t)capacity * element_size(m->dtype), "values")) {
        pk_status status;
        Py_BEGIN_ALLOW_THREADS
        status = pk_export_bitmask(m, capacity, (uint8_t *)bits.buf, values.buf);
        Py_END_ALLOW_THREADS
        result = none_or_raise(status);
    }
    matrix_release(&w);
    PyBuffer_Release(&bits);
    PyBuffer_Release(&values);
    return result;
}

/* import_bitmask(bits, values, dense_out): values must hold one entry per bit set in each row's
 * first cols bits (the library reads that many). */
static PyObject *py_import_bitmask(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)self;
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
            pk_status status;
            Py_BEGIN_ALLOW_THREADS
            status = pk_import_bitmask((const uint8_t *)bits.buf, values.buf, m);
            Py_END_ALLOW_THREADS
            result = none_or_raise(status);
        }
    }
    PyBuffer_Release(&bits);
    PyBuffer_Release(&values);
    matrix_release(&d);
    return result;
}

/* ------------------------------------------------------------------------------------------ */
/* Structured pruning. A group comes as (members, min_keep, stage, stats|None); a member as
 * (tensor, dtype, rows, cols, stride, axis, scored, span, block_cols,
 *  kind, features|None, gradient|None, gdtype, gstride, seed). */

typedef struct StatsObject StatsObject;
static pk_stats *stats_handle(PyObject *object);

typedef struct group_args {
    Py_ssize_t count;
    Py_buffer *buffers; /* 3 per member: tensor, features, gradient (buf NULL when absent) */
    pk_group_member *members;
    criterion_args *crits;
    pk_group group;
} group_args;

static void group_release(group_args *g) {
    for (Py_ssize_t i = 0; g->buffers && i < 3 * g->count; i++)
        if (g->buffers[i].obj) PyBuffer_Release(&g->buffers[i]);
    PyMem_Free(g->buffers);
    PyMem_Free(g->members);
    PyMem_Free(g->crits);
    memset(g, 0, sizeof(*g));
}

static int get_buffer(PyObject *object, Py_buffer *buffer, int writable) {
    if (object == Py_None) return 1;
    return PyObject_GetBuffer(object, buffer, PyBUF_SIMPLE | (writable ? PyBUF_WRITABLE : 0)) == 0;
}

/* Fills *g from a group tuple; on failure sets an exception, releases what it took, returns 0. */
static int group_parse(PyObject *tuple, int writable, group_args *g) {
    PyObject *list, *stats;
    long long min_keep;
    int stage;
    memset(g, 0, sizeof(*g));
    if (!PyArg_ParseTuple(tuple, "O!LiO", &PyList_Type, &list, &min_keep, &stage, &stats)) return 0;
    Py_ssize_t count = PyList_GET_SIZE(list);
    size_t slots = (size_t)(count > 0 ? count : 1);
    g->buffers = (Py_buffer *)PyMem_Calloc(slots * 3, sizeof(Py_buffer));
    g->members = (pk_group_member *)PyMem_Calloc(slots, sizeof(pk_group_member));
    g->crits = (criterion_args *)PyMem_Calloc(slots, sizeof(criterion_args));
    if (!g->buffers || !g->members || !g->crits) {
        PyErr_NoMemory();
        group_release(g);
        return 0;
    }
    g->count = count;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *tensor, *features, *gradient;
        int dtype, axis, scored, kind, gdtype;
        long long rows, cols, stride, span, block_cols, gstride;
        unsigned long long seed;
        Py_buffer *b = &g->buffers[3 * i];
        if (!PyArg_ParseTuple(PyList_GET_ITEM(list, i), "OiLLLiiLLiOOiLK", &tensor, &dtype, &rows, &cols, &stride, &axis,
                              &scored, &span, &block_cols, &kind, &features, &gradient, &gdtype, &gstride, &seed) ||
            !get_buffer(tensor, &b[0], writable) || !get_buffer(features, &b[1], 0) || !get_buffer(gradient, &b[2], 0) ||
            !check_size(&b[0], matrix_bytes(rows, cols, stride, dtype), "tensor")) {
            group_release(g);
            return 0;
        }
        pk_group_member *m = &g->members[i];
        pk_matrix t = {b[0].buf, rows, cols, stride, dtype, 0};
        m->tensor = t;
        m->axis = axis;
        m->scored = scored;
        m->span = span;
        m->block_cols = block_cols;
        fill_criterion(&g->crits[i], kind, &b[1], &b[2], rows, cols, gdtype, gstride, seed);
        m->criterion = &g->crits[i].criterion;
    }
    g->group.members = g->members;
    g->group.member_count = (int64_t)count;
    g->group.min_keep = (int64_t)min_keep;
    g->group.stage = stage;
    if (stats != Py_None) {
        g->group.activations = stats_handle(stats);
        if (!g->group.activations) {
            group_release(g);
            return 0;
        }
    }
    return 1;
}

/* select_structures(groups, (criterion, reduction, normalization, mode, ratio, multiple, threads),
 *                   stage_values|None, scores|None, keep_out, scores_out) */
static PyObject *py_select_structures(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *list;
    Py_buffer stages = {0}, given = {0}, keep = {0}, scores = {0};
    int criterion, reduction, normalization, mode, threads;
    double ratio;
    long long multiple;
    if (!PyArg_ParseTuple(args, "O!(iiiidLi)z*z*w*w*", &PyList_Type, &list, &criterion, &reduction, &normalization,
                          &mode, &ratio, &multiple, &threads, &stages, &given, &keep, &scores))
        return NULL;
    Py_ssize_t count = PyList_GET_SIZE(list), parsed = 0;
    group_args *groups = (group_args *)PyMem_Calloc((size_t)(count > 0 ? count : 1), sizeof(group_args));
    pk_group *plain = (pk_group *)PyMem_Calloc((size_t)(count > 0 ? count : 1), sizeof(pk_group));
    PyObject *result = NULL;
    if (!groups || !plain) {
        PyErr_NoMemory();
        goto done;
    }
    for (; parsed < count; parsed++) {
        if (!group_parse(PyList_GET_ITEM(list, parsed), 0, &groups[parsed])) goto done;
        plain[parsed] = groups[parsed].group;
    }
    {
        pk_structure_options o;
        pk_structure_options_init(&o);
        o.criterion = criterion;
        o.reduction = reduction;
        o.normalization = normalization;
        o.mode = mode;
        o.ratio = ratio;
        o.multiple = multiple;
        o.num_threads = threads;
        if (stages.buf) {
            o.stage_values = (const double *)stages.buf;
            o.stage_count = (int64_t)(stages.len / 8);
        }
        o.scores = (const double *)given.buf;
        pk_status status;
        Py_BEGIN_ALLOW_THREADS
        status = pk_select_structures(plain, (int64_t)count, &o, (uint8_t *)keep.buf, (double *)scores.buf);
        Py_END_ALLOW_THREADS
        result = status == PK_OK ? Py_NewRef(Py_None) : raise_status(status);
    }
done:
    for (Py_ssize_t i = 0; groups && i < parsed; i++) group_release(&groups[i]);
    PyMem_Free(groups);
    PyMem_Free(plain);
    PyBuffer_Release(&stages);
    PyBuffer_Release(&given);
    PyBuffer_Release(&keep);
    PyBuffer_Release(&scores);
    return result;
}

/* group_op(op, group, keep, ...):
 *   op 0 compact: outputs [(buffer, dtype, rows, cols, stride)], kept_out, compensation|None
 *        where compensation = (member, hessian, size, (precision, damp, retries))
 *   op 1 apply in place;  op 2 structure mask: member, mask_out;
 *   op 3 permute in place (pk_permute_group): keep holds the int64 permutation */
static PyObject *py_group_op(PyObject *self, PyObject *args) {
    (void)self;
    int op;
    PyObject *group_tuple, *extra = Py_None, *compensation = Py_None;
    Py_buffer keep = {0}, out = {0}, hessian = {0};
    long long member = 0;
    if (!PyArg_ParseTuple(args, "iOy*|OOw*L", &op, &group_tuple, &keep, &extra, &compensation, &out, &member)) return NULL;
    group_args g;
    PyObject *result = NULL;
    Py_buffer *outputs = NULL;
    pk_matrix *mats = NULL;
    Py_ssize_t acquired = 0;
    if (!group_parse(group_tuple, op == 1 || op == 3, &g)) {
        PyBuffer_Release(&keep);
        PyBuffer_Release(&out);
        return NULL;
    }
    pk_status status;
    if (op == 0) {
        if (!PyList_Check(extra) || PyList_GET_SIZE(extra) != g.count) {
            PyErr_SetString(PyExc_ValueError, "one output per member is needed");
            goto done;
        }
        outputs = (Py_buffer *)PyMem_Calloc((size_t)(g.count > 0 ? g.count : 1), sizeof(Py_buffer));
        mats = (pk_matrix *)PyMem_Calloc((size_t)(g.count > 0 ? g.count : 1), sizeof(pk_matrix));
        if (!outputs || !mats) {
            PyErr_NoMemory();
            goto done;
        }
        for (; acquired < g.count; acquired++) {
            int dtype;
            long long rows, cols, stride;
            if (!PyArg_ParseTuple(PyList_GET_ITEM(extra, acquired), "w*iLLL", &outputs[acquired], &dtype, &rows, &cols, &stride))
                goto done;
            if (!check_size(&outputs[acquired], matrix_bytes(rows, cols, stride, dtype), "output")) {
                acquired++;
                goto done;
            }
            pk_matrix m = {outputs[acquired].buf, rows, cols, stride, dtype, 0};
            mats[acquired] = m;
        }
        pk_compensation c = {0, NULL, 0, NULL};
        pk_reconstruction_options ro;
        int with_compensation = compensation != Py_None;
        if (with_compensation) {
            int precision, retries;
            double damp;
            long long size;
            if (!PyArg_ParseTuple(compensation, "Ly*L(idi)", &c.member, &hessian, &size, &precision, &damp, &retries)) goto done;
            if (!check_size(&hessian, (Py_ssize_t)(size * size * 8), "hessian")) goto done;
            pk_reconstruction_options_init(&ro);
            ro.precision = precision;
            ro.dampening = damp;
            ro.max_dampening_retries = retries;
            c.hessian = (const double *)hessian.buf;
            c.hessian_size = size;
            c.options = &ro;
        }
        Py_BEGIN_ALLOW_THREADS
        status = pk_compact_group(&g.group, (const uint8_t *)keep.buf, with_compensation ? &c : NULL, mats, (int64_t *)out.buf);
        Py_END_ALLOW_THREADS
    } else if (op == 1) {
        Py_BEGIN_ALLOW_THREADS
        status = pk_apply_structures(&g.group, (const uint8_t *)keep.buf);
        Py_END_ALLOW_THREADS
    } else if (op == 3) {
        if (keep.len % 8) {
            PyErr_SetString(PyExc_ValueError, "the permutation must be int64");
            goto done;
        }
        Py_BEGIN_ALLOW_THREADS
        status = pk_permute_group(&g.group, (const int64_t *)keep.buf, (int64_t)(keep.len / 8));
        Py_END_ALLOW_THREADS
    } else {
        Py_BEGIN_ALLOW_THREADS
        status = pk_structure_mask(&g.group, (int64_t)member, (const uint8_t *)keep.buf, (uint8_t *)out.buf);
        Py_END_ALLOW_THREADS
    }
    result = status == PK_OK ? Py_NewRef(Py_None) : raise_status(status);
done:
    for (Py_ssize_t i = 0; outputs && i < acquired; i++) PyBuffer_Release(&outputs[i]);
    PyMem_Free(outputs);
    PyMem_Free(mats);
    group_release(&g);
    PyBuffer_Release(&keep);
    PyBuffer_Release(&out);
    PyBuffer_Release(&hessian);
    return result;
}

/* compact_group_data_free(group, keep, outputs [(buffer, dtype, rows, cols, stride)],
 *     (producer, next, bn_weight, bn_bias, bn_mean, bn_var, epsilon, dampening, activation, threads),
 *     kept_out, bias_shift_out) */
static PyObject *py_compact_group_data_free(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *group_tuple, *list;
    Py_buffer keep = {0}, kept = {0}, shift = {0};
    pk_data_free_options o;
    pk_data_free_options_init(&o);
    long long producer, next, bnw, bnb, bnm, bnv;
    int activation, threads;
    if (!PyArg_ParseTuple(args, "Oy*O!(LLLLLLddii)w*w*", &group_tuple, &keep, &PyList_Type, &list, &producer, &next, &bnw,
                          &bnb, &bnm, &bnv, &o.epsilon, &o.dampening, &activation, &threads, &kept, &shift))
        return NULL;
    o.producer = producer;
    o.next = next;
    o.bn_weight = bnw;
    o.bn_bias = bnb;
    o.bn_mean = bnm;
    o.bn_var = bnv;
    o.activation = activation;
    o.num_threads = threads;
    group_args g;
    PyObject *result = NULL;
    Py_buffer *outputs = NULL;
    pk_matrix *mats = NULL;
    Py_ssize_t acquired = 0;
    if (!group_parse(group_tuple, 0, &g)) {
        PyBuffer_Release(&keep);
        PyBuffer_Release(&kept);
        PyBuffer_Release(&shift);
        return NULL;
    }
    if (PyList_GET_SIZE(list) != g.count) {
        PyErr_SetString(PyExc_ValueError, "one output per member is needed");
        goto done;
    }
    outputs = (Py_buffer *)PyMem_Calloc((size_t)(g.count > 0 ? g.count : 1), sizeof(Py_buffer));
    mats = (pk_matrix *)PyMem_Calloc((size_t)(g.count > 0 ? g.count : 1), sizeof(pk_matrix));
    if (!outputs || !mats) {
        PyErr_NoMemory();
        goto done;
    }
    for (; acquired < g.count; acquired++) {
        int dtype;
        long long rows, cols, stride;
        if (!PyArg_ParseTuple(PyList_GET_ITEM(list, acquired), "w*iLLL", &outputs[acquired], &dtype, &rows, &cols, &stride))
            goto done;
        if (!check_size(&outputs[acquired], matrix_bytes(rows, cols, stride, dtype), "output")) {
            acquired++;
            goto done;
        }
        pk_matrix m = {outputs[acquired].buf, rows, cols, stride, dtype, 0};
        mats[acquired] = m;
    }
    {
        pk_status status;
        Py_BEGIN_ALLOW_THREADS
        status = pk_compact_group_data_free(&g.group, (const uint8_t *)keep.buf, &o, mats, (int64_t *)kept.buf,
                                            (double *)shift.buf, (int64_t)(shift.len / 8));
        Py_END_ALLOW_THREADS
        result = status == PK_OK ? Py_NewRef(Py_None) : raise_status(status);
    }
done:
    for (Py_ssize_t i = 0; outputs && i < acquired; i++) PyBuffer_Release(&outputs[i]);
    PyMem_Free(outputs);
    PyMem_Free(mats);
    group_release(&g);
    PyBuffer_Release(&keep);
    PyBuffer_Release(&kept);
    PyBuffer_Release(&shift);
    return result;
}

/* key_channels(q, qdtype, qrows, qcols, qstride, k, kdtype, krows, kcols, kstride, heads, ratio, keep_out, scores_out) */
static PyObject *py_key_channels(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer q = {0}, k = {0}, keep = {0}, scores = {0};
    int qdtype, kdtype;
    long long qrows, qcols, qstride, krows, kcols, kstride, heads;
    double ratio;
    PyObject *result = NULL;
    if (!PyArg_ParseTuple(args, "y*iLLLy*iLLLLdw*w*", &q, &qdtype, &qrows, &qcols, &qstride, &k, &kdtype, &krows, &kcols,
                          &kstride, &heads, &ratio, &keep, &scores))
        return NULL;
    if (check_size(&q, matrix_bytes(qrows, qcols, qstride, qdtype), "queries") &&
        check_size(&k, matrix_bytes(krows, kcols, kstride, kdtype), "keys") && check_size(&keep, (Py_ssize_t)kcols, "keep") &&
        check_size(&scores, (Py_ssize_t)(kcols * 8), "scores")) {
        pk_matrix qm = {q.buf, qrows, qcols, qstride, qdtype, 0}, km = {k.buf, krows, kcols, kstride, kdtype, 0};
        pk_status status;
        Py_BEGIN_ALLOW_THREADS
        status = pk_key_channels(&qm, &km, (int64_t)heads, ratio, (uint8_t *)keep.buf, (double *)scores.buf);
        Py_END_ALLOW_THREADS
        result = status == PK_OK ? Py_NewRef(Py_None) : raise_status(status);
    }
    PyBuffer_Release(&q);
    PyBuffer_Release(&k);
    PyBuffer_Release(&keep);
    PyBuffer_Release(&scores);
    return result;
}

/* ------------------------------------------------------------------------------------------ */
/* Stats: owns one pk_stats handle. */

struct StatsObject {
    PyObject_HEAD
    pk_stats *handle;
};

static PyTypeObject StatsType;

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

/* _update(batch): pk_stats_update. */
static PyObject *stats_update(StatsObject *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"batch", NULL};
    matrix_arg b;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&", kwlist, to_matrix, &b)) return NULL;
    pk_status status;
    Py_BEGIN_ALLOW_THREADS
    status = pk_stats_update(self->handle, &b.matrix);
    Py_END_ALLOW_THREADS
    matrix_release(&b);
    return none_or_raise(status);
}

static PyObject *stats_merge(StatsObject *self, PyObject *other) {
    if (!PyObject_TypeCheck(other, &StatsType)) {
        PyErr_SetString(PyExc_TypeError, "merge() takes another prunekit.Stats");
        return NULL;
    }
    pk_status status;
    Py_BEGIN_ALLOW_THREADS
    status = pk_stats_merge(self->handle, ((StatsObject *)other)->handle);
    Py_END_ALLOW_THREADS
    return none_or_raise(status);
}

/* _l2_norm(out), _mean(out), ...: the pk_stats_* reader of that name into a float64 buffer. */
static PyObject *stats_read(StatsObject *self, PyObject *out_object,
                            pk_status (*read)(const pk_stats *, double *, int64_t)) {
    Py_buffer out;
    if (PyObject_GetBuffer(out_object, &out, PyBUF_WRITABLE) != 0) return NULL;
    pk_status status;
    Py_BEGIN_ALLOW_THREADS
    status = read(self->handle, (double *)out.buf, (int64_t)(out.len / 8));
    Py_END_ALLOW_THREADS
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

static PyObject *stats_count(StatsObject *self, void *unused) {
    (void)unused;
    int64_t value = 0;
    pk_status status = pk_stats_count(self->handle, &value);
    return status == PK_OK ? PyLong_FromLongLong(value) : raise_status(status);
}

static PyObject *stats_features(StatsObject *self, void *unused) {
    (void)unused;
    int64_t value = 0;
    pk_status status = pk_stats_features(self->handle, &value);
    return status == PK_OK ? PyLong_FromLongLong(value) : raise_status(status);
}

static PyObject *stats_to_bytes(StatsObject *self, PyObject *unused) {
    (void)unused;
    size_t size = 0, written = 0;
    pk_status status = pk_stats_serialized_size(self->handle, &size);
    if (status != PK_OK) return raise_status(status);
    PyObject *bytes = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)size);
    if (!bytes) return NULL;
    status = pk_stats_serialize(self->handle, PyBytes_AS_STRING(bytes), size, &written);
    if (status != PK_OK) {
        Py_DECREF(bytes);
        return raise_status(status);
    }
    return bytes;
}

static PyObject *stats_from_bytes(PyObject *cls, PyObject *arg) {
    Py_buffer b = {0};
    if (PyObject_GetBuffer(arg, &b, PyBUF_SIMPLE) != 0) return NULL;
    pk_stats *handle = NULL;
    pk_status status;
    Py_BEGIN_ALLOW_THREADS
    status = pk_stats_deserialize(b.buf, (size_t)b.len, &handle);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&b);
    return status == PK_OK ? stats_wrap((PyTypeObject *)cls, handle) : raise_status(status);
}

static PyMethodDef stats_methods[] = {
    {"_update", (PyCFunction)(void (*)(void))stats_update, METH_VARARGS | METH_KEYWORDS, NULL},
    {"merge", (PyCFunction)stats_merge, METH_O, "merge(other): add another accumulator's data to this one."},
    {"_l2_norm", (PyCFunction)stats_l2_norm, METH_O, NULL},
    {"_mean", (PyCFunction)stats_mean, METH_O, NULL},
    {"_variance", (PyCFunction)stats_variance, METH_O, NULL},
    {"_std", (PyCFunction)stats_std, METH_O, NULL},
    {"_gram", (PyCFunction)stats_gram, METH_O, NULL},
    {"_centered_gram", (PyCFunction)stats_centered_gram, METH_O, NULL},
    {"_mean_abs", (PyCFunction)stats_mean_abs, METH_O, NULL},
    {"_zero_fraction", (PyCFunction)stats_zero_fraction, METH_O, NULL},
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

static PyObject *py_low_rank(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)self;
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
        Py_BEGIN_ALLOW_THREADS
        status = pk_low_rank(&w.matrix, (const double *)h.view.buf, h.size, &o, &a.matrix, &b.matrix, &r, (double *)sv.buf);
        Py_END_ALLOW_THREADS
        result = status == PK_OK ? PyLong_FromLongLong(r) : raise_status(status);
    }
    matrix_release(&w);
    hessian_release(&h);
    matrix_release(&a);
    matrix_release(&b);
    PyBuffer_Release(&sv);
    return result;
}

/* top_channels(scores, rows, cols, stride, k, indices, *, magnitude): scores float32. */
static PyObject *py_top_channels(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)self;
    static char *names[] = {"scores", "rows", "cols", "stride", "k", "indices", "magnitude", NULL};
    Py_buffer s = {0}, out = {0};
    long long rows, cols, stride, k;
    int magnitude = 0;
    PyObject *result = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*LLLLw*|$p", names, &s, &rows, &cols, &stride, &k, &out, &magnitude))
        return NULL;
    if (check_size(&s, matrix_bytes(rows, cols, stride, PK_DTYPE_FLOAT32), "scores") &&
        check_size(&out, (Py_ssize_t)(rows > 0 && k > 0 ? rows * k * 8 : 0), "indices")) {
        pk_matrix m = {s.buf, rows, cols, stride, PK_DTYPE_FLOAT32, 0};
        pk_status status;
        Py_BEGIN_ALLOW_THREADS
        status = pk_top_channels(&m, (int64_t)k, magnitude, (int64_t *)out.buf);
        Py_END_ALLOW_THREADS
        result = status == PK_OK ? Py_NewRef(Py_None) : raise_status(status);
    }
    PyBuffer_Release(&s);
    PyBuffer_Release(&out);
    return result;
}

/* gather(source, dtype, rows, cols, stride, axis, indices, count, out, out_stride) */
static PyObject *py_gather(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)self;
    static char *names[] = {"source", "dtype", "rows", "cols", "stride", "axis", "indices", "count", "out",
                            "out_rows", "out_cols", "out_stride", NULL};
    Py_buffer src = {0}, idx = {0}, out = {0};
    int dtype, axis;
    long long rows, cols, stride, count, orows, ocols, ostride;
    PyObject *result = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*iLLLiy*Lw*LLL", names, &src, &dtype, &rows, &cols, &stride, &axis,
                                     &idx, &count, &out, &orows, &ocols, &ostride))
        return NULL;
    if (check_size(&src, matrix_bytes(rows, cols, stride, dtype), "source") &&
        check_size(&idx, (Py_ssize_t)(count > 0 ? count * 8 : 0), "indices") &&
        check_size(&out, matrix_bytes(orows, ocols, ostride, dtype), "out")) {
        pk_matrix sm = {src.buf, rows, cols, stride, dtype, 0}, om = {out.buf, orows, ocols, ostride, dtype, 0};
        pk_status status;
        Py_BEGIN_ALLOW_THREADS
        status = pk_gather(&sm, axis, (const int64_t *)idx.buf, (int64_t)count, &om);
        Py_END_ALLOW_THREADS
        result = status == PK_OK ? Py_NewRef(Py_None) : raise_status(status);
    }
    PyBuffer_Release(&src);
    PyBuffer_Release(&idx);
    PyBuffer_Release(&out);
    return result;
}

/* random_channel_mask(importance, count, mask, *, threshold, drop_probability, seed) */
static PyObject *py_random_channel_mask(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)self;
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
        Py_BEGIN_ALLOW_THREADS
        status = pk_random_channel_mask((const float *)imp.buf, (int64_t)count, threshold, probability, (uint64_t)seed,
                                        (uint8_t *)mask.buf);
        Py_END_ALLOW_THREADS
        result = status == PK_OK ? Py_NewRef(Py_None) : raise_status(status);
    }
    PyBuffer_Release(&imp);
    PyBuffer_Release(&mask);
    return result;
}

static PyObject *py_version(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    return Py_BuildValue("(is)", pk_version_number(), pk_version_string());
}

/* ------------------------------------------------------------------------------------------ */
/* Pruning over time: schedules, pruner handles (a capsule that also holds the weight buffers
 * for the pruner's lifetime, as the header requires), soft masks and the host-driven loops. */

static int schedule_parse(PyObject *tuple, pk_schedule *s) {
    pk_schedule_init(s);
    long long begin, end, frequency;
    if (!PyArg_ParseTuple(tuple, "iLLLdd", &s->kind, &begin, &end, &frequency, &s->initial_sparsity,
                          &s->final_sparsity))
        return 0;
    s->begin = begin;
    s->end = end;
    s->frequency = frequency;
    return 1;
}

/* schedule_sparsity((kind, begin, end, frequency, initial, final), step) */
static PyObject *py_schedule_sparsity(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *tuple;
    long long step;
    pk_schedule s;
    double out = 0;
    if (!PyArg_ParseTuple(args, "O!L", &PyTuple_Type, &tuple, &step) || !schedule_parse(tuple, &s)) return NULL;
    pk_status status = pk_schedule_sparsity(&s, step, &out);
    return status == PK_OK ? PyFloat_FromDouble(out) : raise_status(status);
}

typedef struct pruner_capsule {
    pk_pruner *pruner;
    Py_ssize_t count;
    Py_buffer *buffers; /* the weights, held while the pruner lives */
} pruner_capsule;

static void pruner_capsule_close(pruner_capsule *c) {
    pk_pruner_free(c->pruner);
    c->pruner = NULL;
    for (Py_ssize_t i = 0; c->buffers && i < c->count; i++)
        if (c->buffers[i].obj) PyBuffer_Release(&c->buffers[i]);
    PyMem_Free(c->buffers);
    c->buffers = NULL;
    c->count = 0;
}

static void pruner_capsule_destroy(PyObject *capsule) {
    pruner_capsule *c = (pruner_capsule *)PyCapsule_GetPointer(capsule, "prunekit.pruner");
    if (c) {
        pruner_capsule_close(c);
        PyMem_Free(c);
    }
}

static pruner_capsule *pruner_of(PyObject *capsule) {
    return (pruner_capsule *)PyCapsule_GetPointer(capsule, "prunekit.pruner");
}

/* pruner_create(layers, scope, n, m, threads, schedule tuple, targets|None, decay_steps, momentum, soft_temperature)
 * where layers is a list of (weights, dtype, rows, cols, stride, kind, features|None, seed). */
static PyObject *py_pruner_create(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *list, *sched, *targets_obj;
    int scope, n, m, threads;
    long long decay;
    double momentum, temperature;
    if (!PyArg_ParseTuple(args, "O!iiiiO!OLdd", &PyList_Type, &list, &scope, &n, &m, &threads, &PyTuple_Type, &sched,
                          &targets_obj, &decay, &momentum, &temperature))
        return NULL;
    pk_schedule schedule;
    if (!schedule_parse(sched, &schedule)) return NULL;
    Py_ssize_t count = PyList_GET_SIZE(list), slots = count > 0 ? count : 1;
    pruner_capsule *c = (pruner_capsule *)PyMem_Calloc(1, sizeof(pruner_capsule));
    Py_buffer *features = (Py_buffer *)PyMem_Calloc((size_t)slots, sizeof(Py_buffer));
    Py_buffer targets = {0};
    pk_matrix *mats = (pk_matrix *)PyMem_Calloc((size_t)slots, sizeof(pk_matrix));
    criterion_args *crits = (criterion_args *)PyMem_Calloc((size_t)slots, sizeof(criterion_args));
    const pk_criterion **ptrs = (const pk_criterion **)PyMem_Calloc((size_t)slots, sizeof(pk_criterion *));
    PyObject *result = NULL;
    if (c) c->buffers = (Py_buffer *)PyMem_Calloc((size_t)slots, sizeof(Py_buffer));
    if (!c || !c->buffers || !features || !mats || !crits || !ptrs) {
        PyErr_NoMemory();
        goto done;
    }
    c->count = count;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *w, *f;
        int dtype, kind;
        long long rows, cols, stride;
        unsigned long long seed;
        if (!PyArg_ParseTuple(PyList_GET_ITEM(list, i), "OiLLLiOK", &w, &dtype, &rows, &cols, &stride, &kind, &f, &seed) ||
            !get_buffer(w, &c->buffers[i], 1) || !get_buffer(f, &features[i], 0) ||
            !check_size(&c->buffers[i], matrix_bytes(rows, cols, stride, dtype), "weights"))
            goto done;
        pk_matrix mat = {c->buffers[i].buf, rows, cols, stride, dtype, 0};
        mats[i] = mat;
        fill_criterion(&crits[i], kind, &features[i], NULL, rows, cols, 0, 0, seed);
        ptrs[i] = &crits[i].criterion;
    }
    if (targets_obj != Py_None) {
        if (PyObject_GetBuffer(targets_obj, &targets, PyBUF_SIMPLE) != 0) goto done;
        if (!check_size(&targets, count * 8, "targets")) goto done;
    }
    {
        pk_selection sel;
        fill_selection(&sel, scope, 0.0, n, m, threads);
        pk_pruner_options o;
        pk_pruner_options_init(&o);
        o.decay_steps = decay;
        o.gradient_momentum = momentum;
        o.num_threads = threads;
        o.soft_temperature = temperature;
        pk_status status = pk_pruner_create(mats, (int64_t)count, ptrs, &sel, &schedule, (const double *)targets.buf, &o,
                                            &c->pruner);
        if (status != PK_OK) {
            raise_status(status);
            goto done;
        }
        result = PyCapsule_New(c, "prunekit.pruner", pruner_capsule_destroy);
        if (result) c = NULL;
    }
done:
    if (c) {
        pruner_capsule_close(c);
        PyMem_Free(c);
    }
    for (Py_ssize_t i = 0; features && i < count; i++)
        if (features[i].obj) PyBuffer_Release(&features[i]);
    if (targets.obj) PyBuffer_Release(&targets);
    PyMem_Free(features);
    PyMem_Free(mats);
    PyMem_Free(crits);
    PyMem_Free(ptrs);
    return result;
}

/* pruner_step(capsule, step, gradients|None) with gradients a list of (buffer, dtype, rows, cols, stride) */
static PyObject *py_pruner_step(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *capsule, *grads;
    long long step;
    if (!PyArg_ParseTuple(args, "OLO", &capsule, &step, &grads)) return NULL;
    pruner_capsule *c = pruner_of(capsule);
    if (!c) return NULL;
    Py_ssize_t count = grads == Py_None ? 0 : PyList_Size(grads);
    if (count < 0) return NULL;
    Py_buffer *buffers = (Py_buffer *)PyMem_Calloc((size_t)(count > 0 ? count : 1), sizeof(Py_buffer));
    pk_matrix *mats = (pk_matrix *)PyMem_Calloc((size_t)(count > 0 ? count : 1), sizeof(pk_matrix));
    PyObject *result = NULL;
    Py_ssize_t taken = 0;
    if (!buffers || !mats) {
        PyErr_NoMemory();
        goto done;
    }
    for (; taken < count; taken++) {
        int dtype;
        long long rows, cols, stride;
        if (!PyArg_ParseTuple(PyList_GET_ITEM(grads, taken), "y*iLLL", &buffers[taken], &dtype, &rows, &cols, &stride))
            goto done;
        if (!check_size(&buffers[taken], matrix_bytes(rows, cols, stride, dtype), "gradient")) {
            taken++;
            goto done;
        }
        pk_matrix mat = {buffers[taken].buf, rows, cols, stride, dtype, 0};
        mats[taken] = mat;
    }
    {
        pk_status status;
        pk_pruner *p = c->pruner;
        Py_BEGIN_ALLOW_THREADS
        status = pk_pruner_step(p, step, grads == Py_None ? NULL : mats);
        Py_END_ALLOW_THREADS
        result = status == PK_OK ? Py_NewRef(Py_None) : raise_status(status);
    }
done:
    for (Py_ssize_t i = 0; buffers && i < taken; i++) PyBuffer_Release(&buffers[i]);
    PyMem_Free(buffers);
    PyMem_Free(mats);
    return result;
}

/* pruner_query(capsule, which, layer, out): 0 mask (uint8), 1 factors (float32) */
static PyObject *py_pruner_query(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *capsule;
    int which;
    long long layer;
    Py_buffer out = {0};
    if (!PyArg_ParseTuple(args, "OiLw*", &capsule, &which, &layer, &out)) return NULL;
    pruner_capsule *c = pruner_of(capsule);
    pk_status status = PK_ERROR_INVALID_ARGUMENT;
    if (c) {
        if (which == 0)
            status = pk_pruner_mask(c->pruner, layer, (uint8_t *)out.buf, (int64_t)out.len);
        else
            status = pk_pruner_factors(c->pruner, layer, (float *)out.buf, (int64_t)(out.len / 4));
    }
    PyBuffer_Release(&out);
    if (!c) return NULL;
    return status == PK_OK ? Py_NewRef(Py_None) : raise_status(status);
}

/* pruner_soft_mask(capsule, layer, mask_out float32, derivative_out float32|None) */
static PyObject *py_pruner_soft_mask(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *capsule, *deriv_obj;
    long long layer;
    Py_buffer out = {0}, deriv = {0};
    if (!PyArg_ParseTuple(args, "OLw*O", &capsule, &layer, &out, &deriv_obj)) return NULL;
    if (deriv_obj != Py_None && PyObject_GetBuffer(deriv_obj, &deriv, PyBUF_WRITABLE) != 0) {
        PyBuffer_Release(&out);
        return NULL;
    }
    pruner_capsule *c = pruner_of(capsule);
    pk_status status = PK_ERROR_INVALID_SHAPE;
    int mismatch = deriv_obj != Py_None && deriv.len != out.len;
    if (c && !mismatch)
        status = pk_pruner_soft_mask(c->pruner, layer, (float *)out.buf, deriv_obj == Py_None ? NULL : (float *)deriv.buf,
                                     (int64_t)(out.len / 4));
    PyBuffer_Release(&out);
    if (deriv.obj) PyBuffer_Release(&deriv);
    if (!c) return NULL;
    if (mismatch) {
        PyErr_SetString(PyExc_ValueError, "derivative buffer differs in size from the mask buffer");
        return NULL;
    }
    return status == PK_OK ? Py_NewRef(Py_None) : raise_status(status);
}

static PyObject *py_pruner_to_bytes(PyObject *self, PyObject *capsule) {
    (void)self;
    pruner_capsule *c = pruner_of(capsule);
    if (!c) return NULL;
    size_t size = 0, written = 0;
    pk_status status = pk_pruner_serialized_size(c->pruner, &size);
    if (status != PK_OK) return raise_status(status);
    PyObject *bytes = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)size);
    if (!bytes) return NULL;
    status = pk_pruner_serialize(c->pruner, PyBytes_AS_STRING(bytes), size, &written);
    if (status != PK_OK) {
        Py_DECREF(bytes);
        return raise_status(status);
    }
    return bytes;
}

static PyObject *py_pruner_restore(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *capsule;
    Py_buffer b = {0};
    if (!PyArg_ParseTuple(args, "Oy*", &capsule, &b)) return NULL;
    pruner_capsule *c = pruner_of(capsule);
    pk_status status = PK_OK;
    if (c) {
        pk_pruner *p = c->pruner;
        Py_BEGIN_ALLOW_THREADS
        status = pk_pruner_restore(p, b.buf, (size_t)b.len);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&b);
    if (!c) return NULL;
    return status == PK_OK ? Py_NewRef(Py_None) : raise_status(status);
}

static PyObject *py_pruner_close(PyObject *self, PyObject *capsule) {
    (void)self;
    pruner_capsule *c = pruner_of(capsule);
    if (!c) return NULL;
    pruner_capsule_close(c);
    Py_RETURN_NONE;
}

/* soft_mask(weights, dtype, rows, cols, stride, scope, sparsity, temperature, mask_out, derivative_out|None) */
static PyObject *py_soft_mask(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer w = {0}, mask = {0}, deriv = {0};
    int dtype, scope;
    long long rows, cols, stride;
    double sparsity, temperature;
    PyObject *result = NULL;
    if (!PyArg_ParseTuple(args, "y*iLLLiddw*z*", &w, &dtype, &rows, &cols, &stride, &scope, &sparsity, &temperature,
                          &mask, &deriv))
        return NULL;
    if (check_size(&w, matrix_bytes(rows, cols, stride, dtype), "weights") &&
        check_size(&mask, (Py_ssize_t)(rows * cols * 4), "mask") &&
        (!deriv.buf || check_size(&deriv, (Py_ssize_t)(rows * cols * 4), "derivative"))) {
        pk_matrix m = {w.buf, rows, cols, stride, dtype, 0};
        pk_selection sel;
        fill_selection(&sel, scope, sparsity, 2, 4, 0);
        pk_status status;
        Py_BEGIN_ALLOW_THREADS
        status = pk_soft_mask(&m, &sel, temperature, (float *)mask.buf, (float *)deriv.buf);
        Py_END_ALLOW_THREADS
        result = status == PK_OK ? Py_NewRef(Py_None) : raise_status(status);
    }
    PyBuffer_Release(&w);
    PyBuffer_Release(&mask);
    PyBuffer_Release(&deriv);
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

/* progressive_structures(groups, (criterion, reduction, normalization, threads), scores|None,
 *                        (target, step, tolerance), evaluate, keep_out, protected_out)
 * -> (pruned, evaluations, accepted, rejected, stop, baseline, final) */
static PyObject *py_progressive_structures(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *list, *callable;
    Py_buffer given = {0}, keep = {0}, prot = {0};
    int criterion, reduction, normalization, threads;
    double target, step, tolerance;
    if (!PyArg_ParseTuple(args, "O!(iiii)z*(ddd)Ow*w*", &PyList_Type, &list, &criterion, &reduction, &normalization,
                          &threads, &given, &target, &step, &tolerance, &callable, &keep, &prot))
        return NULL;
    Py_ssize_t count = PyList_GET_SIZE(list), parsed = 0;
    group_args *groups = (group_args *)PyMem_Calloc((size_t)(count > 0 ? count : 1), sizeof(group_args));
    pk_group *plain = (pk_group *)PyMem_Calloc((size_t)(count > 0 ? count : 1), sizeof(pk_group));
    PyObject *result = NULL;
    if (!groups || !plain) {
        PyErr_NoMemory();
        goto done;
    }
    for (; parsed < count; parsed++) {
        if (!group_parse(PyList_GET_ITEM(list, parsed), 1, &groups[parsed])) goto done;
        plain[parsed] = groups[parsed].group;
    }
    {
        pk_structure_options o;
        pk_structure_options_init(&o);
        o.criterion = criterion;
        o.reduction = reduction;
        o.normalization = normalization;
        o.num_threads = threads;
        o.scores = (const double *)given.buf;
        pk_progressive_options p;
        pk_progressive_options_init(&p);
        p.target_ratio = target;
        p.step_ratio = step;
        p.tolerance = tolerance;
        pk_progressive_result r;
        memset(&r, 0, sizeof(r));
        callback_context ctx = {callable, NULL, NULL, NULL, NULL};
        ctx.thread = PyEval_SaveThread();
        pk_status status = pk_progressive_structures(plain, (int64_t)count, &o, &p, evaluate_trampoline, &ctx,
                                                     (uint8_t *)keep.buf, (uint8_t *)prot.buf, &r);
        PyEval_RestoreThread(ctx.thread);
        PyObject *success = status == PK_OK ? Py_BuildValue("(LLLLidd)", (long long)r.pruned, (long long)r.evaluations,
                                                            (long long)r.accepted, (long long)r.rejected, (int)r.stop,
                                                            r.baseline_cost, r.final_cost)
                                            : NULL;
        result = callback_result(&ctx, status, success);
    }
done:
    for (Py_ssize_t i = 0; groups && i < parsed; i++) group_release(&groups[i]);
    PyMem_Free(groups);
    PyMem_Free(plain);
    PyBuffer_Release(&given);
    PyBuffer_Release(&keep);
    PyBuffer_Release(&prot);
    return result;
}

/* sensitivity_ratios(sizes int64 buffer, probes float64 buffer, target, damage, ratios_out, counts_out) */
static PyObject *py_sensitivity_ratios(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer sizes = {0}, probes = {0}, ratios = {0}, counts = {0};
    double target;
    PyObject *callable, *result = NULL;
    if (!PyArg_ParseTuple(args, "y*y*dOw*w*", &sizes, &probes, &target, &callable, &ratios, &counts)) return NULL;
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
    PyBuffer_Release(&sizes);
    PyBuffer_Release(&probes);
    PyBuffer_Release(&ratios);
    PyBuffer_Release(&counts);
    return result;
}

static PyMethodDef methods[] = {
    {"score", (PyCFunction)(void (*)(void))py_score, METH_VARARGS | METH_KEYWORDS, NULL},
    {"mask", (PyCFunction)(void (*)(void))py_mask, METH_VARARGS | METH_KEYWORDS, NULL},
    {"mask_layers", (PyCFunction)(void (*)(void))py_mask_layers, METH_VARARGS | METH_KEYWORDS, NULL},
    {"apply_mask", (PyCFunction)(void (*)(void))py_apply_mask, METH_VARARGS | METH_KEYWORDS, NULL},
    {"mask_sparsity", (PyCFunction)(void (*)(void))py_mask_sparsity, METH_VARARGS | METH_KEYWORDS, NULL},
    {"sparsegpt", (PyCFunction)(void (*)(void))py_sparsegpt, METH_VARARGS | METH_KEYWORDS, NULL},
    {"reconstruct", (PyCFunction)(void (*)(void))py_reconstruct, METH_VARARGS | METH_KEYWORDS, NULL},
    {"prune_columns", (PyCFunction)(void (*)(void))py_prune_columns, METH_VARARGS | METH_KEYWORDS, NULL},
    {"admm", (PyCFunction)(void (*)(void))py_admm, METH_VARARGS | METH_KEYWORDS, NULL},
    {"refine_mask", (PyCFunction)(void (*)(void))py_refine_mask, METH_VARARGS | METH_KEYWORDS, NULL},
    {"channel_permutation", (PyCFunction)(void (*)(void))py_channel_permutation, METH_VARARGS | METH_KEYWORDS, NULL},
    {"outlier_ratio", (PyCFunction)(void (*)(void))py_outlier_ratio, METH_VARARGS | METH_KEYWORDS, NULL},
    {"compensate_bias", (PyCFunction)(void (*)(void))py_compensate_bias, METH_VARARGS | METH_KEYWORDS, NULL},
    {"output_error", (PyCFunction)(void (*)(void))py_output_error, METH_VARARGS | METH_KEYWORDS, NULL},
    {"allocate_sparsity", (PyCFunction)(void (*)(void))py_allocate_sparsity, METH_VARARGS | METH_KEYWORDS, NULL},
    {"count_nonzero", (PyCFunction)(void (*)(void))py_count_nonzero, METH_VARARGS | METH_KEYWORDS, NULL},
    {"export_24", (PyCFunction)(void (*)(void))py_export_24, METH_VARARGS | METH_KEYWORDS, NULL},
    {"import_24", (PyCFunction)(void (*)(void))py_import_24, METH_VARARGS | METH_KEYWORDS, NULL},
    {"export_csr", (PyCFunction)(void (*)(void))py_export_csr, METH_VARARGS | METH_KEYWORDS, NULL},
    {"import_csr", (PyCFunction)(void (*)(void))py_import_csr, METH_VARARGS | METH_KEYWORDS, NULL},
    {"export_bitmask", (PyCFunction)(void (*)(void))py_export_bitmask, METH_VARARGS | METH_KEYWORDS, NULL},
    {"import_bitmask", (PyCFunction)(void (*)(void))py_import_bitmask, METH_VARARGS | METH_KEYWORDS, NULL},
    {"select_structures", py_select_structures, METH_VARARGS, NULL},
    {"group_op", py_group_op, METH_VARARGS, NULL},
    {"compact_group_data_free", py_compact_group_data_free, METH_VARARGS, NULL},
    {"key_channels", py_key_channels, METH_VARARGS, NULL},
    {"low_rank", (PyCFunction)(void (*)(void))py_low_rank, METH_VARARGS | METH_KEYWORDS, NULL},
    {"top_channels", (PyCFunction)(void (*)(void))py_top_channels, METH_VARARGS | METH_KEYWORDS, NULL},
    {"gather", (PyCFunction)(void (*)(void))py_gather, METH_VARARGS | METH_KEYWORDS, NULL},
    {"random_channel_mask", (PyCFunction)(void (*)(void))py_random_channel_mask, METH_VARARGS | METH_KEYWORDS, NULL},
    {"version", py_version, METH_NOARGS, NULL},
    {"schedule_sparsity", py_schedule_sparsity, METH_VARARGS, NULL},
    {"pruner_create", py_pruner_create, METH_VARARGS, NULL},
    {"pruner_step", py_pruner_step, METH_VARARGS, NULL},
    {"pruner_query", py_pruner_query, METH_VARARGS, NULL},
    {"pruner_soft_mask", py_pruner_soft_mask, METH_VARARGS, NULL},
    {"pruner_to_bytes", py_pruner_to_bytes, METH_O, NULL},
    {"pruner_restore", py_pruner_restore, METH_VARARGS, NULL},
    {"pruner_close", py_pruner_close, METH_O, NULL},
    {"soft_mask", py_soft_mask, METH_VARARGS, NULL},
    {"progressive_structures", py_progressive_structures, METH_VARARGS, NULL},
    {"sensitivity_ratios", py_sensitivity_ratios, METH_VARARGS, NULL},
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
