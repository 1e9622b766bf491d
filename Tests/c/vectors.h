/* Loads Tests/vectors (see Tests/vectors/generate.py): one case per manifest line, layer files
 * alongside. Plain C99 that also compiles as C++. */
#ifndef PRUNEKIT_TEST_VECTORS_H
#define PRUNEKIT_TEST_VECTORS_H
#include <prunekit.h>
#include "check.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VEC_MAX_LAYERS 4

typedef struct vec_layer {
    int64_t rows, cols, stride;
    void *weights;     /* rows * stride elements */
    float *features;   /* cols, or NULL */
    void *gradient;    /* rows * cols elements, or NULL */
    uint8_t *mask;     /* expected, rows * cols */
} vec_layer;

typedef struct vec_case {
    char name[160];
    char criterion[16];
    char scope[16];
    double sparsity;
    int32_t n, m;
    uint64_t seed;
    int32_t dtype;
    int layer_count;
    vec_layer layers[VEC_MAX_LAYERS];
} vec_case;

/* The C tests' one file loader: the whole file at the path that `format` and the arguments
 * print, in memory the caller frees; NULL if it is missing or, when bytes is not 0, does not
 * hold exactly bytes bytes. */
static void *vec_read(size_t bytes, const char *format, ...) {
    char path[1200];
    va_list args;
    va_start(args, format);
    vsnprintf(path, sizeof path, format, args);
    va_end(args);
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *data = size >= 0 && (bytes == 0 || (size_t)size == bytes) ? malloc(size > 0 ? (size_t)size : 1) : NULL;
    if (data && size > 0 && fread(data, 1, (size_t)size, f) != (size_t)size) { free(data); data = NULL; }
    fclose(f);
    return data;
}

/* Opens a manifest of `folder` (one case per line); NULL, counted as a failure, if it cannot. */
static FILE *vec_manifest(const char *folder, const char *file) {
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", folder, file);
    FILE *f = fopen(path, "r");
    CHECK(f != NULL, "cannot open %s", path);
    return f;
}

static int vec_dtype(const char *s) {
    if (!strcmp(s, "float32")) return PK_DTYPE_FLOAT32;
    if (!strcmp(s, "float64")) return PK_DTYPE_FLOAT64;
    if (!strcmp(s, "float16")) return PK_DTYPE_FLOAT16;
    return PK_DTYPE_BFLOAT16;
}

static void vec_list(const char *s, int64_t *out, int count) {
    for (int i = 0; i < count; i++) {
        char *end;
        out[i] = strtoll(s, &end, 10);
        s = end + (*end == ',');
    }
}

/* Parses one manifest line and loads its files; returns 0 on success. */
static int vec_load(const char *folder, const char *line, vec_case *c) {
    char rows[128] = "", cols[128] = "", strides[128] = "", dtype[16] = "", buffer[1024];
    memset(c, 0, sizeof *c);
    strncpy(buffer, line, sizeof buffer - 1);
    buffer[sizeof buffer - 1] = 0;
    for (char *tok = strtok(buffer, " \n"); tok; tok = strtok(NULL, " \n")) {
        char *eq = strchr(tok, '=');
        if (!eq) continue;
        *eq = 0;
        const char *key = tok, *value = eq + 1;
        if (!strcmp(key, "name")) strncpy(c->name, value, sizeof c->name - 1);
        else if (!strcmp(key, "criterion")) strncpy(c->criterion, value, sizeof c->criterion - 1);
        else if (!strcmp(key, "scope")) strncpy(c->scope, value, sizeof c->scope - 1);
        else if (!strcmp(key, "sparsity")) c->sparsity = strtod(value, NULL);
        else if (!strcmp(key, "n")) c->n = atoi(value);
        else if (!strcmp(key, "m")) c->m = atoi(value);
        else if (!strcmp(key, "seed")) c->seed = strtoull(value, NULL, 10);
        else if (!strcmp(key, "dtype")) strncpy(dtype, value, sizeof dtype - 1);
        else if (!strcmp(key, "layers")) c->layer_count = atoi(value);
        else if (!strcmp(key, "rows")) strncpy(rows, value, sizeof rows - 1);
        else if (!strcmp(key, "cols")) strncpy(cols, value, sizeof cols - 1);
        else if (!strcmp(key, "stride")) strncpy(strides, value, sizeof strides - 1);
    }
    if (c->layer_count < 1 || c->layer_count > VEC_MAX_LAYERS) return 1;
    c->dtype = vec_dtype(dtype);
    int64_t r[VEC_MAX_LAYERS], k[VEC_MAX_LAYERS], s[VEC_MAX_LAYERS];
    vec_list(rows, r, c->layer_count);
    vec_list(cols, k, c->layer_count);
    vec_list(strides, s, c->layer_count);
    for (int i = 0; i < c->layer_count; i++) {
        vec_layer *l = &c->layers[i];
        l->rows = r[i]; l->cols = k[i]; l->stride = s[i];
        if (!(l->weights = vec_read(0, "%s/%s.L%d.w.bin", folder, c->name, i))) return 1;
        if (!(l->mask = (uint8_t *)vec_read(0, "%s/%s.L%d.mask.bin", folder, c->name, i))) return 1;
        l->features = (float *)vec_read(0, "%s/%s.L%d.f.bin", folder, c->name, i);
        l->gradient = vec_read(0, "%s/%s.L%d.g.bin", folder, c->name, i);
    }
    return 0;
}

static void vec_free(vec_case *c) {
    for (int i = 0; i < c->layer_count; i++) {
        free(c->layers[i].weights); free(c->layers[i].mask);
        free(c->layers[i].features); free(c->layers[i].gradient);
    }
}

static int vec_criterion_kind(const char *s) {
    if (!strcmp(s, "magnitude")) return PK_CRITERION_MAGNITUDE;
    if (!strcmp(s, "random")) return PK_CRITERION_RANDOM;
    if (!strcmp(s, "wanda")) return PK_CRITERION_WANDA;
    if (!strcmp(s, "stade")) return PK_CRITERION_STADE;
    if (!strcmp(s, "taylor")) return PK_CRITERION_TAYLOR;
    return PK_CRITERION_SCORES;
}

static int vec_scope(const char *s) {
    if (!strcmp(s, "row")) return PK_SCOPE_ROW;
    if (!strcmp(s, "layer")) return PK_SCOPE_LAYER;
    if (!strcmp(s, "global")) return PK_SCOPE_GLOBAL;
    return PK_SCOPE_NM;
}
#endif
