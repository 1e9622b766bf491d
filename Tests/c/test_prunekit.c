/* C tests of libprunekit through include/prunekit.h only. Compiled twice: as C99 and as C++17.
 * Usage: test_prunekit VECTORS_FOLDER. Ends with "N passed, N failed". */
#include <prunekit.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vectors.h"

#include "check.h"

/* Checks a call's status and that its message mentions `text`. */
#define CHECK_STATUS(call, expected, text)                                                   \
    do {                                                                                    \
        pk_status got_ = (call);                                                            \
        CHECK(got_ == (expected), "%s: got %s, expected %s (%s)", #call, pk_status_string(got_), \
              pk_status_string(expected), pk_last_error());                                 \
        CHECK(strstr(pk_last_error(), (text)) != NULL, "%s: message '%s' lacks '%s'", #call,   \
              pk_last_error(), (text));                                                     \
    } while (0)

static int all_equal(const uint8_t *a, uint8_t value, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (a[i] != value) return 0;
    return 1;
}

/* ------------------------------------------------------------------------------------------ */

static pk_status run_case(const vec_case *c, int32_t threads, uint8_t **masks) {
    pk_matrix weights[VEC_MAX_LAYERS], gradients[VEC_MAX_LAYERS];
    pk_criterion criteria[VEC_MAX_LAYERS];
    const pk_criterion *criterion_ptrs[VEC_MAX_LAYERS];
    for (int i = 0; i < c->layer_count; i++) {
        const vec_layer *l = &c->layers[i];
        pk_matrix w = {l->weights, l->rows, l->cols, l->stride, c->dtype, 0};
        pk_matrix g = {l->gradient, l->rows, l->cols, l->cols, c->dtype, 0};
        weights[i] = w;
        gradients[i] = g;
        pk_criterion_init(&criteria[i]);
        criteria[i].kind = vec_criterion_kind(c->criterion);
        criteria[i].seed = c->seed;
        criteria[i].feature_values = l->features;
        criteria[i].feature_count = l->cols;
        criteria[i].gradient = &gradients[i];
        criterion_ptrs[i] = &criteria[i];
    }
    pk_selection s;
    pk_selection_init(&s);
    s.scope = vec_scope(c->scope);
    s.sparsity = c->sparsity;
    s.n = c->n;
    s.m = c->m;
    s.num_threads = threads;
    if (c->layer_count == 1) return pk_mask(&weights[0], &criteria[0], &s, masks[0]);
    return pk_mask_layers(weights, criterion_ptrs, c->layer_count, &s, masks);
}

static void test_vectors(const char *folder) {
    char line[1024];
    FILE *manifest = vec_manifest(folder, "manifest.txt");
    if (!manifest) return;
    int cases = 0;
    while (fgets(line, sizeof line, manifest)) {
        vec_case c;
        if (vec_load(folder, line, &c) != 0) {
            CHECK(0, "cannot load case: %s", line);
            continue;
        }
        cases++;
        for (int threads = 0; threads <= 4; threads += 3) { /* default threads, then 3 */
            uint8_t *masks[VEC_MAX_LAYERS];
            for (int i = 0; i < c.layer_count; i++) {
                masks[i] = (uint8_t *)malloc((size_t)(c.layers[i].rows * c.layers[i].cols));
                memset(masks[i], 0xAB, (size_t)(c.layers[i].rows * c.layers[i].cols));
            }
            pk_status status = run_case(&c, threads == 0 ? 0 : 1, masks);
            CHECK(status == PK_OK, "%s: %s", c.name, pk_last_error());
            for (int i = 0; i < c.layer_count && status == PK_OK; i++) {
                size_t n = (size_t)(c.layers[i].rows * c.layers[i].cols);
                CHECK(memcmp(masks[i], c.layers[i].mask, n) == 0, "%s layer %d (threads %d): mask differs from the reference",
                      c.name, i, threads);
            }
            for (int i = 0; i < c.layer_count; i++) free(masks[i]);
        }
        vec_free(&c);
    }
    fclose(manifest);
    CHECK(cases > 300, "only %d vector cases", cases);
    printf("golden vectors: %d cases checked at default and one thread\n", cases);
}

/* ------------------------------------------------------------------------------------------ */

static void test_bad_input(void) {
    float w[4 * 8];
    for (int i = 0; i < 32; i++) w[i] = (float)(i % 7) - 3.0f;
    float features[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    uint8_t mask[32];
    memset(mask, 0xAB, sizeof mask);
    pk_matrix m = {w, 4, 8, 8, PK_DTYPE_FLOAT32, 0};
    pk_criterion crit;
    pk_criterion_init(&crit);
    pk_selection sel;
    pk_selection_init(&sel);

    CHECK_STATUS(pk_mask(NULL, &crit, &sel, mask), PK_ERROR_NULL_POINTER, "weights");
    CHECK_STATUS(pk_mask(&m, NULL, &sel, mask), PK_ERROR_NULL_POINTER, "criterion");
    CHECK_STATUS(pk_mask(&m, &crit, NULL, mask), PK_ERROR_NULL_POINTER, "selection");
    CHECK_STATUS(pk_mask(&m, &crit, &sel, NULL), PK_ERROR_NULL_POINTER, "mask_out");
    pk_matrix bad = m;
    bad.data = NULL;
    CHECK_STATUS(pk_mask(&bad, &crit, &sel, mask), PK_ERROR_NULL_POINTER, "data");
    bad = m; bad.rows = 0;
    CHECK_STATUS(pk_mask(&bad, &crit, &sel, mask), PK_ERROR_INVALID_SHAPE, "positive");
    bad = m; bad.cols = -3;
    CHECK_STATUS(pk_mask(&bad, &crit, &sel, mask), PK_ERROR_INVALID_SHAPE, "positive");
    bad = m; bad.row_stride = 4;
    CHECK_STATUS(pk_mask(&bad, &crit, &sel, mask), PK_ERROR_INVALID_SHAPE, "row_stride");
    bad = m; bad.rows = INT64_MAX / 4;
    CHECK_STATUS(pk_mask(&bad, &crit, &sel, mask), PK_ERROR_INVALID_SHAPE, "too large");
    bad = m; bad.dtype = 9;
    CHECK_STATUS(pk_mask(&bad, &crit, &sel, mask), PK_ERROR_UNSUPPORTED_DTYPE, "dtype 9");

    pk_selection s = sel;
    s.sparsity = 1.5;
    CHECK_STATUS(pk_mask(&m, &crit, &s, mask), PK_ERROR_INVALID_ARGUMENT, "sparsity");
    s.sparsity = -0.1;
    CHECK_STATUS(pk_mask(&m, &crit, &s, mask), PK_ERROR_INVALID_ARGUMENT, "sparsity");
    s.sparsity = nan("");
    CHECK_STATUS(pk_mask(&m, &crit, &s, mask), PK_ERROR_INVALID_ARGUMENT, "sparsity");
    s = sel; s.scope = PK_SCOPE_NM; s.n = 4; s.m = 4;
    CHECK_STATUS(pk_mask(&m, &crit, &s, mask), PK_ERROR_INVALID_ARGUMENT, "N:M");
    s.n = 0;
    CHECK_STATUS(pk_mask(&m, &crit, &s, mask), PK_ERROR_INVALID_ARGUMENT, "N:M");
    s.n = 2; s.m = 3;
    CHECK_STATUS(pk_mask(&m, &crit, &s, mask), PK_ERROR_INVALID_SHAPE, "divide");
    s = sel; s.scope = 17;
    CHECK_STATUS(pk_mask(&m, &crit, &s, mask), PK_ERROR_INVALID_ARGUMENT, "scope");
    s = sel; s.num_threads = -2;
    CHECK_STATUS(pk_mask(&m, &crit, &s, mask), PK_ERROR_INVALID_ARGUMENT, "num_threads");
    s = sel; s.struct_size = sizeof(size_t);
    CHECK_STATUS(pk_mask(&m, &crit, &s, mask), PK_ERROR_STRUCT_SIZE, "struct_size");

    /* A larger struct from a newer header: accepted if the unknown tail is zero. */
    struct { pk_selection known; int64_t future; } newer;
    memset(&newer, 0, sizeof newer);
    pk_selection_init(&newer.known);
    newer.known.struct_size = sizeof newer;
    CHECK(pk_mask(&m, &crit, &newer.known, mask) == PK_OK, "zero tail refused: %s", pk_last_error());
    memset(mask, 0xAB, sizeof mask);
    newer.future = 1;
    CHECK_STATUS(pk_mask(&m, &crit, &newer.known, mask), PK_ERROR_STRUCT_SIZE, "does not know");

    pk_criterion c = crit;
    c.kind = 42;
    CHECK_STATUS(pk_mask(&m, &c, &sel, mask), PK_ERROR_INVALID_ARGUMENT, "kind");
    c = crit; c.struct_size = 3;
    CHECK_STATUS(pk_mask(&m, &c, &sel, mask), PK_ERROR_STRUCT_SIZE, "struct_size");
    c = crit; c.kind = PK_CRITERION_WANDA;
    CHECK_STATUS(pk_mask(&m, &c, &sel, mask), PK_ERROR_NULL_POINTER, "feature_values");
    c.feature_values = features;
    c.feature_count = 7; /* statistics of the wrong length */
    CHECK_STATUS(pk_mask(&m, &c, &sel, mask), PK_ERROR_INVALID_SHAPE, "length 7");
    c.feature_count = 8;
    features[3] = nanf("");
    CHECK_STATUS(pk_mask(&m, &c, &sel, mask), PK_ERROR_NON_FINITE, "index 3");
    features[3] = -1.0f;
    CHECK_STATUS(pk_mask(&m, &c, &sel, mask), PK_ERROR_INVALID_ARGUMENT, "negative");
    features[3] = 4.0f;
    c = crit; c.kind = PK_CRITERION_TAYLOR;
    CHECK_STATUS(pk_mask(&m, &c, &sel, mask), PK_ERROR_NULL_POINTER, "gradient");
    pk_matrix grad = {w, 4, 4, 8, PK_DTYPE_FLOAT32, 0};
    c.gradient = &grad;
    CHECK_STATUS(pk_mask(&m, &c, &sel, mask), PK_ERROR_INVALID_SHAPE, "gradient");

    /* Non-finite weights: the first position is named, for every scope. */
    int scopes[4] = {PK_SCOPE_ROW, PK_SCOPE_LAYER, PK_SCOPE_GLOBAL, PK_SCOPE_NM};
    w[2 * 8 + 5] = INFINITY;
    w[3 * 8 + 0] = nanf("");
    for (int i = 0; i < 4; i++) {
        s = sel;
        s.scope = scopes[i];
        CHECK_STATUS(pk_mask(&m, &crit, &s, mask), PK_ERROR_NON_FINITE, "row 2, column 5");
    }
    CHECK(all_equal(mask, 0xAB, sizeof mask), "mask written on error");
    float scores_out[32];
    memset(scores_out, 0, sizeof scores_out);
    CHECK_STATUS(pk_score(&m, &crit, scores_out), PK_ERROR_NON_FINITE, "row 2, column 5");
    CHECK(all_equal((uint8_t *)scores_out, 0, sizeof scores_out), "scores written on error");
    w[2 * 8 + 5] = 1.0f;
    w[3 * 8 + 0] = 1.0f;

    /* Global: the message names the layer. */
    float w2[6] = {1, 2, 3, 4, 5, nanf("")};
    pk_matrix layers[2] = {m, {w2, 2, 3, 3, PK_DTYPE_FLOAT32, 0}};
    const pk_criterion *crits[2] = {&crit, &crit};
    uint8_t mask2[6];
    memset(mask2, 0xAB, sizeof mask2);
    uint8_t *outs[2] = {mask, mask2};
    s = sel;
    s.scope = PK_SCOPE_GLOBAL;
    CHECK_STATUS(pk_mask_layers(layers, crits, 2, &s, outs), PK_ERROR_NON_FINITE, "layer 1: weight at row 1, column 2");
    s.scope = PK_SCOPE_ROW; /* per-layer scopes also write nothing unless every layer is valid */
    CHECK_STATUS(pk_mask_layers(layers, crits, 2, &s, outs), PK_ERROR_NON_FINITE, "layer 1");
    CHECK(all_equal(mask, 0xAB, sizeof mask) && all_equal(mask2, 0xAB, sizeof mask2), "masks written on error");
    CHECK_STATUS(pk_mask_layers(layers, crits, 0, &s, outs), PK_ERROR_INVALID_SHAPE, "layer_count");
    w2[5] = 6.0f;

    /* Apply: a bad mask byte changes nothing. */
    float before[32];
    memcpy(before, w, sizeof w);
    uint8_t apply[32];
    memset(apply, 0, sizeof apply);
    apply[30] = 3;
    CHECK_STATUS(pk_apply_mask(&m, apply), PK_ERROR_INVALID_ARGUMENT, "index 30");
    CHECK(memcmp(before, w, sizeof w) == 0, "weights changed on error");
    CHECK_STATUS(pk_apply_mask(&m, NULL), PK_ERROR_NULL_POINTER, "mask");
    CHECK_STATUS(pk_mask_sparsity(apply, 4, 8, NULL, NULL), PK_ERROR_INVALID_ARGUMENT, "index 30");
    CHECK_STATUS(pk_mask_sparsity(apply, 0, 8, NULL, NULL), PK_ERROR_INVALID_SHAPE, "positive");

    CHECK_STATUS(pk_criterion_init(NULL), PK_ERROR_NULL_POINTER, "criterion");
    CHECK(strcmp(pk_status_string(12345), "PK_UNKNOWN_STATUS") == 0, "unknown status string");
}

/* ------------------------------------------------------------------------------------------ */

static void test_apply_and_sparsity(void) {
    /* Strided float16 weights: only the viewed columns change, in their own dtype. */
    uint16_t w[3 * 6];
    for (int i = 0; i < 18; i++) w[i] = (uint16_t)(0x3C00 + i); /* 1.0 and up */
    pk_matrix m = {w, 3, 4, 6, PK_DTYPE_FLOAT16, 0};
    pk_criterion crit;
    pk_criterion_init(&crit);
    pk_selection sel;
    pk_selection_init(&sel);
    sel.scope = PK_SCOPE_NM;
    uint8_t mask[12];
    CHECK(pk_mask(&m, &crit, &sel, mask) == PK_OK, "%s", pk_last_error());
    CHECK(pk_apply_mask(&m, mask) == PK_OK, "%s", pk_last_error());
    for (int r = 0; r < 3; r++) {
        for (int j = 0; j < 6; j++) {
            uint16_t expected = (j < 4 && !mask[r * 4 + j]) ? 0 : (uint16_t)(0x3C00 + r * 6 + j);
            CHECK(w[r * 6 + j] == expected, "apply r%d c%d", r, j);
        }
    }
    double rows[3], overall = -1;
    CHECK(pk_mask_sparsity(mask, 3, 4, rows, &overall) == PK_OK, "%s", pk_last_error());
    CHECK(overall == 0.5 && rows[0] == 0.5 && rows[2] == 0.5, "sparsity %f", overall);
    /* Magnitude 2:4 on ascending values keeps the two largest of each group. */
    CHECK(mask[0] == 0 && mask[1] == 0 && mask[2] == 1 && mask[3] == 1, "2:4 pattern");
}

/* ------------------------------------------------------------------------------------------ */

static void test_stats(void) {
    const int64_t features = 5;
    pk_stats *a = NULL, *b = NULL, *all = NULL;
    CHECK(pk_stats_create(features, &a) == PK_OK && a, "create");
    CHECK(pk_stats_create(features, &b) == PK_OK && b, "create");
    CHECK(pk_stats_create(features, &all) == PK_OK && all, "create");
    double data[40 * 5];
    for (int i = 0; i < 40 * 5; i++) data[i] = sin(0.7 * i) * (1 + i % 5) + 2.0;
    /* Shards in two dtypes vs one pass over everything. */
    pk_matrix first = {data, 13, 5, 5, PK_DTYPE_FLOAT64, 0};
    pk_matrix second = {data + 13 * 5, 27, 5, 5, PK_DTYPE_FLOAT64, 0};
    pk_matrix whole = {data, 40, 5, 5, PK_DTYPE_FLOAT64, 0};
    CHECK(pk_stats_update(a, &first) == PK_OK, "%s", pk_last_error());
    CHECK(pk_stats_update(b, &second) == PK_OK, "%s", pk_last_error());
    CHECK(pk_stats_update(all, &whole) == PK_OK, "%s", pk_last_error());
    CHECK(pk_stats_merge(a, b) == PK_OK, "%s", pk_last_error());
    int64_t count = 0;
    CHECK(pk_stats_count(a, &count) == PK_OK && count == 40, "count %lld", (long long)count);
    double x[5], y[5];
    pk_status (*getters[4])(const pk_stats *, double *, int64_t) = {pk_stats_mean, pk_stats_variance, pk_stats_std, pk_stats_l2_norm};
    for (int g = 0; g < 4; g++) {
        CHECK(getters[g](a, x, 5) == PK_OK && getters[g](all, y, 5) == PK_OK, "getter %d", g);
        for (int j = 0; j < 5; j++) CHECK(fabs(x[j] - y[j]) <= 1e-12 * fabs(y[j]), "getter %d feature %d: %.17g vs %.17g", g, j, x[j], y[j]);
    }
    /* Statistics of the wrong length, empty statistics, a batch of the wrong width. */
    CHECK_STATUS(pk_stats_l2_norm(a, x, 4), PK_ERROR_INVALID_SHAPE, "length 4");
    pk_stats *empty = NULL;
    pk_stats_create(features, &empty);
    CHECK_STATUS(pk_stats_mean(empty, x, 5), PK_ERROR_INVALID_ARGUMENT, "empty");
    pk_matrix narrow = {data, 2, 4, 4, PK_DTYPE_FLOAT64, 0};
    CHECK_STATUS(pk_stats_update(a, &narrow), PK_ERROR_INVALID_SHAPE, "features");
    pk_stats *other = NULL;
    pk_stats_create(3, &other);
    CHECK_STATUS(pk_stats_merge(a, other), PK_ERROR_INVALID_SHAPE, "merge");
    /* Non-finite activations: nothing changes. */
    double bad_data[10] = {1, 2, 3, 4, 5, 6, 7, INFINITY, 9, 10};
    pk_matrix bad = {bad_data, 2, 5, 5, PK_DTYPE_FLOAT64, 0};
    CHECK_STATUS(pk_stats_update(a, &bad), PK_ERROR_NON_FINITE, "token 1, feature 2");
    CHECK(pk_stats_count(a, &count) == PK_OK && count == 40, "count changed on error");
    CHECK_STATUS(pk_stats_create(0, &other), PK_ERROR_INVALID_SHAPE, "features");
    CHECK_STATUS(pk_stats_create(5, NULL), PK_ERROR_NULL_POINTER, "stats_out");

    /* Listed rows (pk_stats_update_rows) equal the gathered matrix, byte for byte; bad lists
     * change nothing. */
    {
        const int64_t picked[6] = {39, 3, 3, 17, 0, 22};
        double gathered[6 * 5];
        for (int i = 0; i < 6; i++) memcpy(gathered + i * 5, data + picked[i] * 5, 5 * sizeof(double));
        pk_matrix rows6 = {gathered, 6, 5, 5, PK_DTYPE_FLOAT64, 0};
        pk_stats *g = NULL, *l = NULL;
        CHECK(pk_stats_create_gram(features, &g) == PK_OK && pk_stats_create_gram(features, &l) == PK_OK, "create");
        CHECK(pk_stats_update(g, &rows6) == PK_OK, "%s", pk_last_error());
        CHECK(pk_stats_update_rows(l, &whole, picked, 6) == PK_OK, "%s", pk_last_error());
        CHECK(pk_stats_update_rows(l, &whole, NULL, 0) == PK_OK, "an empty list: %s", pk_last_error());
        size_t gs = 0, ls = 0, gw = 0, lw = 0;
        pk_stats_serialized_size(g, &gs);
        pk_stats_serialized_size(l, &ls);
        uint8_t *gb = (uint8_t *)malloc(gs), *lb = (uint8_t *)malloc(ls);
        CHECK(gs == ls && pk_stats_serialize(g, gb, gs, &gw) == PK_OK && pk_stats_serialize(l, lb, ls, &lw) == PK_OK &&
              memcmp(gb, lb, gs) == 0, "update_rows bytes differ from the gathered batch's");
        const int64_t outside[2] = {1, 40}, negative[1] = {-1};
        CHECK_STATUS(pk_stats_update_rows(l, &whole, outside, 2), PK_ERROR_INVALID_ARGUMENT, "rows[1] is 40");
        CHECK_STATUS(pk_stats_update_rows(l, &whole, negative, 1), PK_ERROR_INVALID_ARGUMENT, "rows[0] is -1");
        CHECK_STATUS(pk_stats_update_rows(l, &whole, picked, -1), PK_ERROR_INVALID_ARGUMENT, "count");
        CHECK_STATUS(pk_stats_update_rows(l, &whole, NULL, 2), PK_ERROR_NULL_POINTER, "rows");
        CHECK_STATUS(pk_stats_update_rows(l, &narrow, picked, 1), PK_ERROR_INVALID_SHAPE, "features");
        const int64_t finite_row[1] = {0}, bad_row[1] = {1};
        CHECK(pk_stats_update_rows(l, &bad, finite_row, 1) == PK_OK, "the infinity is in a row not listed: %s", pk_last_error());
        CHECK_STATUS(pk_stats_update_rows(l, &bad, bad_row, 1), PK_ERROR_NON_FINITE, "token 0 (batch row 1), feature 2");
        CHECK(pk_stats_count(l, &count) == PK_OK && count == 7, "count %lld", (long long)count);
        free(gb);
        free(lb);
        pk_stats_free(g);
        pk_stats_free(l);
    }

    /* Serialization round trip; truncated and corrupted bytes refused. */
    size_t size = 0, written = 0;
    CHECK(pk_stats_serialized_size(a, &size) == PK_OK && size > 32, "size");
    uint8_t *bytes = (uint8_t *)malloc(size);
    CHECK_STATUS(pk_stats_serialize(a, bytes, size - 1, &written), PK_ERROR_BUFFER_TOO_SMALL, "capacity");
    CHECK(pk_stats_serialize(a, bytes, size, &written) == PK_OK && written == size, "serialize");
    pk_stats *restored = NULL;
    CHECK(pk_stats_deserialize(bytes, size, &restored) == PK_OK && restored, "%s", pk_last_error());
    CHECK(pk_stats_mean(restored, x, 5) == PK_OK && pk_stats_mean(a, y, 5) == PK_OK && memcmp(x, y, sizeof x) == 0, "round trip");
    pk_stats *never = NULL;
    CHECK_STATUS(pk_stats_deserialize(bytes, size - 5, &never), PK_ERROR_CORRUPT_DATA, "truncated");
    CHECK_STATUS(pk_stats_deserialize(bytes, 10, &never), PK_ERROR_CORRUPT_DATA, "truncated");
    bytes[50] ^= 1;
    CHECK_STATUS(pk_stats_deserialize(bytes, size, &never), PK_ERROR_CORRUPT_DATA, "checksum");
    bytes[50] ^= 1;
    bytes[8] = 9;
    CHECK_STATUS(pk_stats_deserialize(bytes, size, &never), PK_ERROR_CORRUPT_DATA, "version");
    bytes[0] = 'X';
    CHECK_STATUS(pk_stats_deserialize(bytes, size, &never), PK_ERROR_CORRUPT_DATA, "magic");
    CHECK(never == NULL, "handle written on error");
    free(bytes);

    /* Handles: free(NULL) is a no-op; a freed handle is refused, not a crash. */
    pk_stats_free(NULL);
    pk_stats_free(b);
    CHECK_STATUS(pk_stats_count(b, &count), PK_ERROR_INVALID_ARGUMENT, "live");
    pk_stats_free(b); /* double free of a stale handle: ignored */
    CHECK(pk_stats_merge(a, a) == PK_OK, "self merge");
    CHECK(pk_stats_count(a, &count) == PK_OK && count == 80, "self merge count %lld", (long long)count);
    pk_stats_free(a); pk_stats_free(all); pk_stats_free(empty); pk_stats_free(other); pk_stats_free(restored);
}

/* ------------------------------------------------------------------------------------------ */

/* SparseGPT golden vectors (float64 arithmetic vs the numpy reference), and its errors. */
static void test_sparsegpt(const char *folder) {
    char line[512];
    FILE *manifest = vec_manifest(folder, "sparsegpt.txt");
    if (!manifest) return;
    int cases = 0;
    while (fgets(line, sizeof line, manifest)) {
        char name[128] = "", op[32] = "", scope[16] = "";
        double sparsity = 0;
        int n = 0, m = 0, block = 0, rows = 0, cols = 0;
        if (sscanf(line, "name=%127s op=%31s scope=%15s sparsity=%lf n=%d m=%d block=%d rows=%d cols=%d", name, op, scope,
                   &sparsity, &n, &m, &block, &rows, &cols) != 9)
            continue;
        cases++;
        double *w = (double *)vec_read(8 * (size_t)(rows * cols), "%s/sgpt_%s.w.bin", folder, name);
        double *h = (double *)vec_read(8 * (size_t)(cols * cols), "%s/sgpt_%s.h.bin", folder, name);
        double *expected = (double *)vec_read(8 * (size_t)(rows * cols), "%s/sgpt_%s.out.bin", folder, name);
        uint8_t *given = (uint8_t *)vec_read(0, "%s/sgpt_%s.given.bin", folder, name);
        uint8_t *expected_mask = (uint8_t *)vec_read((size_t)(rows * cols), "%s/sgpt_%s.mask.bin", folder, name);
        double *out = (double *)malloc(sizeof(double) * (size_t)(rows * cols));
        uint8_t *mask = (uint8_t *)malloc((size_t)(rows * cols));
        pk_matrix wm = {w, rows, cols, cols, PK_DTYPE_FLOAT64, 0};
        pk_matrix om = {out, rows, cols, cols, PK_DTYPE_FLOAT64, 0};
        pk_reconstruction_options o;
        pk_reconstruction_options_init(&o);
        o.precision = PK_PRECISION_FLOAT64;
        o.block_size = block;
        o.sparsity = sparsity;
        o.scope = strcmp(scope, "nm") == 0 ? PK_SCOPE_NM : PK_SCOPE_LAYER;
        o.n = n;
        o.m = m;
        pk_status status;
        if (!strcmp(op, "sparsegpt")) status = pk_sparsegpt(&wm, h, cols, &o, mask, &om);
        else if (!strcmp(op, "reconstruct")) status = pk_reconstruct(&wm, h, cols, given, &o, &om);
        else status = pk_prune_columns(&wm, h, cols, given, &o, &om);
        CHECK(status == PK_OK, "%s: %s", name, pk_last_error());
        double scale = 0, worst = 0;
        for (int i = 0; i < rows * cols; i++) {
            scale = fmax(scale, fabs(expected[i]));
            worst = fmax(worst, fabs(out[i] - expected[i]));
        }
        CHECK(worst <= 1e-9 * scale, "%s: weights differ by %g (scale %g)", name, worst, scale);
        if (expected_mask) CHECK(memcmp(mask, expected_mask, (size_t)(rows * cols)) == 0, "%s: mask differs", name);

        if (!strcmp(op, "sparsegpt")) {
            /* Errors: nothing written. */
            memset(mask, 0xAB, (size_t)(rows * cols));
            memcpy(out, w, sizeof(double) * (size_t)(rows * cols));
            CHECK_STATUS(pk_sparsegpt(&wm, h, cols - 1, &o, mask, &om), PK_ERROR_INVALID_SHAPE, "hessian");
            CHECK_STATUS(pk_sparsegpt(&wm, NULL, cols, &o, mask, &om), PK_ERROR_NULL_POINTER, "hessian");
            double saved = h[1];
            h[1] += 1.0;
            CHECK_STATUS(pk_sparsegpt(&wm, h, cols, &o, mask, &om), PK_ERROR_INVALID_ARGUMENT, "symmetric");
            h[1] = nan("");
            CHECK_STATUS(pk_sparsegpt(&wm, h, cols, &o, mask, &om), PK_ERROR_NON_FINITE, "hessian");
            h[1] = saved;
            pk_reconstruction_options bad = o;
            bad.block_size = 0;
            CHECK_STATUS(pk_sparsegpt(&wm, h, cols, &bad, mask, &om), PK_ERROR_INVALID_ARGUMENT, "block_size");
            bad = o;
            bad.scope = PK_SCOPE_NM; bad.n = 2; bad.m = 4; bad.block_size = 6;
            CHECK_STATUS(pk_sparsegpt(&wm, h, cols, &bad, mask, &om), PK_ERROR_INVALID_SHAPE, "block size");
            bad = o;
            bad.precision = 7;
            CHECK_STATUS(pk_sparsegpt(&wm, h, cols, &bad, mask, &om), PK_ERROR_INVALID_ARGUMENT, "precision");
            bad = o;
            bad.struct_size = 8;
            CHECK_STATUS(pk_sparsegpt(&wm, h, cols, &bad, mask, &om), PK_ERROR_STRUCT_SIZE, "struct_size");
            pk_matrix small = {out, rows, cols - 1, cols, PK_DTYPE_FLOAT64, 0};
            CHECK_STATUS(pk_sparsegpt(&wm, h, cols, &o, mask, &small), PK_ERROR_INVALID_SHAPE, "output");
            /* Never positive definite: a large negative eigenvalue, no retries. */
            double *indefinite = (double *)calloc((size_t)(cols * cols), sizeof(double));
            for (int i = 0; i < cols; i++) indefinite[i * cols + i] = 1.0;
            indefinite[1] = indefinite[cols] = 1000.0;
            bad = o;
            bad.max_dampening_retries = 0;
            CHECK_STATUS(pk_sparsegpt(&wm, indefinite, cols, &bad, mask, &om), PK_ERROR_NUMERIC, "positive definite");
            free(indefinite);
            CHECK(all_equal(mask, 0xAB, (size_t)(rows * cols)), "%s: mask written on error", name);
            CHECK(memcmp(out, w, sizeof(double) * (size_t)(rows * cols)) == 0, "%s: weights written on error", name);
        }
        free(w); free(h); free(expected); free(given); free(expected_mask); free(out); free(mask);
    }
    fclose(manifest);
    CHECK(cases >= 5, "only %d sparsegpt cases", cases);
    printf("sparsegpt vectors: %d cases checked\n", cases);

    /* The Gram matrix through the statistics handle. */
    pk_stats *g = NULL;
    CHECK(pk_stats_create_gram(3, &g) == PK_OK, "%s", pk_last_error());
    double x[6] = {1, 2, 3, 4, 5, 6}, gram[9];
    pk_matrix batch = {x, 2, 3, 3, PK_DTYPE_FLOAT64, 0};
    CHECK(pk_stats_update(g, &batch) == PK_OK, "%s", pk_last_error());
    CHECK(pk_stats_gram(g, gram, 9) == PK_OK, "%s", pk_last_error());
    CHECK(gram[0] == 17 && gram[1] == 22 && gram[3] == 22 && gram[8] == 45, "gram %g %g %g %g", gram[0], gram[1], gram[3], gram[8]);
    CHECK_STATUS(pk_stats_gram(g, gram, 8), PK_ERROR_INVALID_SHAPE, "length 8");
    pk_stats *plain = NULL;
    pk_stats_create(3, &plain);
    CHECK_STATUS(pk_stats_gram(plain, gram, 9), PK_ERROR_INVALID_ARGUMENT, "Gram");
    CHECK_STATUS(pk_stats_merge(g, plain), PK_ERROR_INVALID_ARGUMENT, "with and without");
    pk_stats_free(g);
    pk_stats_free(plain);
}

/* ------------------------------------------------------------------------------------------ */

/* Sparse formats: round trips through every format, refusals, nothing written on error. */
static void test_sparse_formats(void) {
    enum { R = 3, C = 12 };
    float w[R * C], back[R * C], values24[R * C / 2], values[R * C];
    uint8_t meta[R * 2], bits[R * 2];
    int64_t offsets[R + 1], columns[R * C], nnz = -1;
    for (int i = 0; i < R * C; i++) w[i] = (i % 4 == 1 || i % 4 == 2) ? (float)(i + 1) : 0.0f; /* 2:4 */
    w[4 + 1] = 0.0f; /* a group with one non-zero */
    pk_matrix m = {w, R, C, C, PK_DTYPE_FLOAT32, 0}, out = {back, R, C, C, PK_DTYPE_FLOAT32, 0};
    CHECK(pk_count_nonzero(&m, &nnz) == PK_OK && nnz == R * C / 2 - 1, "nnz %lld", (long long)nnz);
    CHECK(pk_export_24(&m, values24, meta) == PK_OK, "%s", pk_last_error());
    CHECK(meta[0] == ((1 | 2 << 2) | (0 | 2 << 2) << 4), "metadata byte 0 is 0x%02x", meta[0]);
    memset(back, 0xFF, sizeof back);
    CHECK(pk_import_24(values24, meta, &out) == PK_OK && memcmp(back, w, sizeof w) == 0, "2:4 round trip");
    CHECK(pk_export_csr(&m, nnz, offsets, columns, values) == PK_OK, "%s", pk_last_error());
    CHECK(offsets[0] == 0 && offsets[R] == nnz && columns[0] == 1, "csr structure");
    memset(back, 0xFF, sizeof back);
    CHECK(pk_import_csr(offsets, columns, values, &out) == PK_OK && memcmp(back, w, sizeof w) == 0, "csr round trip");
    CHECK(pk_export_bitmask(&m, nnz, bits, values) == PK_OK && bits[0] == 0x46 && bits[1] == 0x06, "bits %02x %02x", bits[0], bits[1]);
    memset(back, 0xFF, sizeof back);
    CHECK(pk_import_bitmask(bits, values, &out) == PK_OK && memcmp(back, w, sizeof w) == 0, "bitmask round trip");
    /* Refusals. */
    CHECK_STATUS(pk_export_csr(&m, nnz - 1, offsets, columns, values), PK_ERROR_BUFFER_TOO_SMALL, "capacity");
    w[0] = 5.0f; /* three non-zeros in group 0 of row 0 */
    memset(meta, 0xAB, sizeof meta);
    CHECK_STATUS(pk_export_24(&m, values24, meta), PK_ERROR_INVALID_ARGUMENT, "row 0, columns 0...3");
    CHECK(all_equal(meta, 0xAB, sizeof meta), "metadata written on error");
    uint8_t bad_meta[R * 2] = {0x03, 0, 0, 0, 0, 0};
    CHECK_STATUS(pk_import_24(values24, bad_meta, &out), PK_ERROR_CORRUPT_DATA, "increase");
    int64_t bad_offsets[R + 1] = {0, 5, 3, 3};
    CHECK_STATUS(pk_import_csr(bad_offsets, columns, values, &out), PK_ERROR_CORRUPT_DATA, "decrease");
    CHECK_STATUS(pk_export_24(&m, NULL, meta), PK_ERROR_NULL_POINTER, "values_out");
}

/* pk_last_error is per thread: a failure on another thread does not change this thread's. */
static void *fail_on_other_thread(void *out) {
    pk_stats *never = NULL;
    pk_stats_create(-5, &never);
    strncpy((char *)out, pk_last_error(), 255);
    return NULL;
}

static void test_thread_local_errors(void) {
    pk_stats *never = NULL;
    CHECK_STATUS(pk_stats_create(0, &never), PK_ERROR_INVALID_SHAPE, "got 0");
    char other[256] = "";
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, fail_on_other_thread, other) == 0, "pthread_create");
    pthread_join(thread, NULL);
    CHECK(strstr(other, "got -5") != NULL, "other thread saw '%s'", other);
    CHECK(strstr(pk_last_error(), "got 0") != NULL, "this thread's message became '%s'", pk_last_error());
    /* Success leaves the message in place. */
    CHECK(pk_version_number() > 0 && strstr(pk_last_error(), "got 0") != NULL, "message cleared by a success");
}

/* ------------------------------------------------------------------------------------------ */

#include "structures.h"

/* ADMM against the float64 numpy reference (Tests/vectors/admm.txt), at 1 and 3 threads, plus
 * refusals with nothing written. */
static void test_admm(const char *folder) {
    char line[512];
    FILE *manifest = vec_manifest(folder, "admm.txt");
    if (!manifest) return;
    int cases = 0;
    while (fgets(line, sizeof line, manifest)) {
        char name[128] = "", scope[16] = "";
        int rows = 0, cols = 0, n = 0, m = 0, iterations = 0, ramp = 0, interval = 0, refine = 0;
        double sparsity = 0, rho = 0, growth = 0, damp = 0;
        if (sscanf(line, "name=%127s rows=%d cols=%d scope=%15s sparsity=%lf n=%d m=%d iterations=%d ramp=%d rho=%lf "
                   "rho_growth=%lf rho_interval=%d refine=%d dampening=%lf", name, &rows, &cols, scope, &sparsity, &n, &m,
                   &iterations, &ramp, &rho, &growth, &interval, &refine, &damp) != 14)
            continue;
        cases++;
        double *w = (double *)vec_read(8 * (size_t)(rows * cols), "%s/admm_%s.w.bin", folder, name);
        double *h = (double *)vec_read(8 * (size_t)(cols * cols), "%s/admm_%s.h.bin", folder, name);
        double *expected = (double *)vec_read(8 * (size_t)(rows * cols), "%s/admm_%s.out.bin", folder, name);
        uint8_t *expected_mask = (uint8_t *)vec_read((size_t)(rows * cols), "%s/admm_%s.mask.bin", folder, name);
        size_t count = (size_t)rows * (size_t)cols;
        double *out = (double *)malloc(sizeof(double) * count);
        uint8_t *mask = (uint8_t *)malloc(count);
        pk_matrix wm = {w, rows, cols, cols, PK_DTYPE_FLOAT64, 0};
        pk_matrix om = {out, rows, cols, cols, PK_DTYPE_FLOAT64, 0};
        pk_admm_options o;
        pk_admm_options_init(&o);
        o.precision = PK_PRECISION_FLOAT64;
        o.scope = !strcmp(scope, "nm") ? PK_SCOPE_NM : !strcmp(scope, "row") ? PK_SCOPE_ROW : PK_SCOPE_LAYER;
        o.sparsity = sparsity;
        o.n = n;
        o.m = m;
        o.iterations = iterations;
        o.ramp_iterations = ramp;
        o.rho = rho;
        o.rho_growth = growth;
        o.rho_interval = interval;
        o.refine_iterations = refine;
        o.dampening = damp;
        for (int threads = 1; threads <= 3; threads += 2) {
            o.num_threads = threads;
            memset(mask, 0xAB, count);
            CHECK(pk_admm(&wm, h, cols, NULL, &o, mask, &om) == PK_OK, "%s: %s", name, pk_last_error());
            double scale = 0, worst = 0;
            for (size_t i = 0; i < count; i++) {
                scale = fmax(scale, fabs(expected[i]));
                worst = fmax(worst, fabs(out[i] - expected[i]));
            }
            CHECK(worst <= 1e-6 * scale, "%s: weights differ by %g (scale %g)", name, worst, scale);
            CHECK(memcmp(mask, expected_mask, count) == 0, "%s at %d threads: mask differs", name, threads);
        }
        /* Refusals: nothing written. */
        memset(mask, 0xAB, count);
        memset(out, 0xCD, sizeof(double) * count);
        pk_admm_options bad = o;
        bad.ramp_iterations = bad.iterations + 1;
        CHECK_STATUS(pk_admm(&wm, h, cols, NULL, &bad, mask, &om), PK_ERROR_INVALID_ARGUMENT, "ramp iterations");
        bad = o;
        bad.rho = -1;
        CHECK_STATUS(pk_admm(&wm, h, cols, NULL, &bad, mask, &om), PK_ERROR_INVALID_ARGUMENT, "rho");
        bad = o;
        bad.scope = PK_SCOPE_GLOBAL;
        CHECK_STATUS(pk_admm(&wm, h, cols, NULL, &bad, mask, &om), PK_ERROR_INVALID_ARGUMENT, "scope");
        bad = o;
        bad.struct_size = sizeof bad - 8;
        CHECK_STATUS(pk_admm(&wm, h, cols, NULL, &bad, mask, &om), PK_ERROR_STRUCT_SIZE, "struct_size");
        CHECK_STATUS(pk_admm(&wm, h, cols - 1, NULL, &o, mask, &om), PK_ERROR_INVALID_SHAPE, "hessian");
        CHECK(all_equal(mask, 0xAB, count) && all_equal((const uint8_t *)out, 0xCD, sizeof(double) * count),
              "%s: output written on error", name);
        free(w);
        free(h);
        free(expected);
        free(expected_mask);
        free(out);
        free(mask);
    }
    fclose(manifest);
    CHECK(cases == 4, "admm vectors: %d cases", cases);
}

/* N:M channel permutations against the numpy reference's golden permutations (permutation.txt),
 * then pk_permute_group applying one, and the refusals (nothing written). */
static void test_permutation(const char *folder) {
    char line[512];
    FILE *manifest = vec_manifest(folder, "permutation.txt");
    if (!manifest) return;
    int cases = 0;
    while (fgets(line, sizeof line, manifest)) {
        char name[128] = "";
        int rows = 0, cols = 0, n = 0, m = 0;
        long long segment = 0, max_swaps = 0;
        double before = 0, after = 0;
        if (sscanf(line, "name=%127s rows=%d cols=%d n=%d m=%d segment=%lld max_swaps=%lld before=%lf after=%lf", name,
                   &rows, &cols, &n, &m, &segment, &max_swaps, &before, &after) != 9)
            continue;
        cases++;
        float *w = (float *)vec_read(4 * (size_t)(rows * cols), "%s/%s.w.bin", folder, name);
        float *f = (float *)vec_read(4 * (size_t)cols, "%s/%s.f.bin", folder, name);
        int64_t *expected = (int64_t *)vec_read(8 * (size_t)cols, "%s/%s.perm.bin", folder, name);
        int64_t *perm = (int64_t *)malloc(sizeof(int64_t) * (size_t)cols);
        pk_matrix wm = {w, rows, cols, cols, PK_DTYPE_FLOAT32, 0};
        pk_criterion c;
        pk_criterion_init(&c);
        c.kind = PK_CRITERION_WANDA;
        c.feature_values = f;
        c.feature_count = cols;
        pk_permutation_options o;
        pk_permutation_options_init(&o);
        o.n = n;
        o.m = m;
        o.segment = segment;
        o.max_swaps = max_swaps;
        for (int threads = 1; threads <= 3; threads += 2) {
            o.num_threads = threads;
            double kb = 0, ka = 0;
            CHECK(pk_channel_permutation(&wm, &c, &o, perm, &kb, &ka) == PK_OK, "%s: %s", name, pk_last_error());
            CHECK(memcmp(perm, expected, sizeof(int64_t) * (size_t)cols) == 0, "%s at %d threads: permutation differs",
                  name, threads);
            CHECK(fabs(kb - before) <= 1e-12 * before && fabs(ka - after) <= 1e-12 * after, "%s: kept %g %g, expected %g %g",
                  name, kb, ka, before, after);
        }
        /* Refusals: nothing written. */
        memset(perm, 0xAB, sizeof(int64_t) * (size_t)cols);
        pk_permutation_options bad = o;
        bad.max_swaps = 0;
        CHECK_STATUS(pk_channel_permutation(&wm, &c, &bad, perm, NULL, NULL), PK_ERROR_INVALID_ARGUMENT, "budget");
        bad = o;
        bad.segment = m + 1;
        CHECK_STATUS(pk_channel_permutation(&wm, &c, &bad, perm, NULL, NULL), PK_ERROR_INVALID_SHAPE, "segment");
        bad = o;
        bad.time_limit = -1;
        CHECK_STATUS(pk_channel_permutation(&wm, &c, &bad, perm, NULL, NULL), PK_ERROR_INVALID_ARGUMENT, "time limit");
        bad = o;
        bad.struct_size = sizeof bad - 8;
        CHECK_STATUS(pk_channel_permutation(&wm, &c, &bad, perm, NULL, NULL), PK_ERROR_STRUCT_SIZE, "struct_size");
        CHECK_STATUS(pk_channel_permutation(&wm, &c, &o, NULL, NULL, NULL), PK_ERROR_NULL_POINTER, "permutation_out");
        CHECK(all_equal((const uint8_t *)perm, 0xAB, sizeof(int64_t) * (size_t)cols), "%s: output written on error", name);
        free(w);
        free(f);
        free(expected);
        free(perm);
    }
    fclose(manifest);
    CHECK(cases == 4, "permutation vectors: %d cases", cases);

    /* pk_permute_group: a producer's rows, its bias and a consumer's columns move together. */
    float up[4 * 2] = {1, 2, 3, 4, 5, 6, 7, 8}, bias[4] = {10, 20, 30, 40}, down[3 * 4] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
    pk_group_member members[3] = {
        {{up, 4, 2, 2, PK_DTYPE_FLOAT32, 0}, PK_AXIS_ROWS, 1, 1, 0, NULL},
        {{bias, 1, 4, 4, PK_DTYPE_FLOAT32, 0}, PK_AXIS_COLS, 0, 1, 0, NULL},
        {{down, 3, 4, 4, PK_DTYPE_FLOAT32, 0}, PK_AXIS_COLS, 1, 1, 0, NULL},
    };
    pk_group g = {members, 3, 0, 0, 0, NULL};
    int64_t p[4] = {2, 0, 3, 1}, repeated[4] = {2, 0, 2, 1};
    CHECK_STATUS(pk_permute_group(&g, repeated, 4), PK_ERROR_INVALID_ARGUMENT, "repeats");
    CHECK_STATUS(pk_permute_group(&g, p, 3), PK_ERROR_INVALID_SHAPE, "entries");
    CHECK(up[0] == 1 && bias[0] == 10 && down[0] == 0, "permute_group wrote on error");
    CHECK(pk_permute_group(&g, p, 4) == PK_OK, "permute_group: %s", pk_last_error());
    CHECK(up[0] == 5 && up[1] == 6 && up[2] == 1 && bias[0] == 30 && bias[3] == 20 && down[0] == 2 && down[1] == 0 &&
          down[4] == 6, "permute_group moved the wrong structures");
}

/* Every _init fills the defaults the header documents (they come from the Swift option types'
 * defaults: a change there shows here). */
static void test_init_defaults(void) {
    pk_criterion c;
    CHECK(pk_criterion_init(&c) == PK_OK && c.struct_size == sizeof c && c.kind == PK_CRITERION_MAGNITUDE && !c.feature_values
          && c.seed == 0, "pk_criterion_init");
    pk_selection sel;
    CHECK(pk_selection_init(&sel) == PK_OK && sel.struct_size == sizeof sel && sel.scope == PK_SCOPE_ROW && sel.sparsity == 0.5
          && sel.n == 2 && sel.m == 4 && sel.num_threads == 0, "pk_selection_init");
    pk_schedule s;
    CHECK(pk_schedule_init(&s) == PK_OK && s.struct_size == sizeof s && s.kind == PK_SCHEDULE_CUBIC && s.begin == 0
          && s.end == 1000 && s.frequency == 100 && s.initial_sparsity == 0 && s.final_sparsity == 0.5, "pk_schedule_init");
    pk_pruner_options po;
    CHECK(pk_pruner_options_init(&po) == PK_OK && po.struct_size == sizeof po && po.decay_steps == 0
          && po.gradient_momentum == 0.9 && po.num_threads == 0 && po.soft_temperature == 0, "pk_pruner_options_init");
    pk_progressive_options pr;
    CHECK(pk_progressive_options_init(&pr) == PK_OK && pr.struct_size == sizeof pr && pr.target_ratio == 0.5
          && pr.step_ratio == 0.05 && pr.tolerance == 0.01, "pk_progressive_options_init");
    pk_reconstruction_options r;
    CHECK(pk_reconstruction_options_init(&r) == PK_OK && r.struct_size == sizeof r && r.scope == PK_SCOPE_LAYER
          && r.precision == PK_PRECISION_FLOAT32 && r.sparsity == 0.5 && r.n == 2 && r.m == 4 && r.block_size == 128
          && r.dampening == 0.01 && r.max_dampening_retries == 4 && r.num_threads == 0, "pk_reconstruction_options_init");
    pk_admm_options a;
    CHECK(pk_admm_options_init(&a) == PK_OK && a.struct_size == sizeof a && a.scope == PK_SCOPE_LAYER
          && a.precision == PK_PRECISION_FLOAT32 && a.sparsity == 0.5 && a.n == 2 && a.m == 4 && a.iterations == 30
          && a.ramp_iterations == 20 && a.rho == 1 && a.rho_growth == 1 && a.rho_interval == 1 && a.refine_iterations == 10
          && a.dampening == 0.1 && a.num_threads == 0, "pk_admm_options_init");
    pk_swap_options sw;
    CHECK(pk_swap_options_init(&sw) == PK_OK && sw.struct_size == sizeof sw && sw.scope == PK_SCOPE_ROW && sw.n == 2 && sw.m == 4
          && sw.max_swaps == 100 && sw.candidates == 8 && sw.num_threads == 0, "pk_swap_options_init");
    pk_low_rank_options lr;
    CHECK(pk_low_rank_options_init(&lr) == PK_OK && lr.struct_size == sizeof lr && lr.rank == 0 && lr.energy == 0
          && lr.dampening == 0.01 && lr.max_dampening_retries == 4 && lr.num_threads == 0, "pk_low_rank_options_init");
    pk_permutation_options pm;
    CHECK(pk_permutation_options_init(&pm) == PK_OK && pm.struct_size == sizeof pm && pm.n == 2 && pm.m == 4 && pm.segment == 0
          && pm.max_swaps == (int64_t)1 << 20 && pm.time_limit == 0 && pm.num_threads == 0 && pm.reserved == 0,
          "pk_permutation_options_init");
    pk_structure_options so;
    CHECK(pk_structure_options_init(&so) == PK_OK && so.struct_size == sizeof so && so.criterion == PK_STRUCTURE_CRITERION_L2
          && so.reduction == PK_REDUCTION_SUM && so.normalization == PK_NORMALIZATION_NONE && so.mode == PK_STRUCTURE_MODE_PER_GROUP
          && so.ratio == 0.5 && !so.stage_values && so.stage_count == 0 && so.multiple == 1 && !so.scores && so.num_threads == 0,
          "pk_structure_options_init");
    pk_data_free_options df;
    CHECK(pk_data_free_options_init(&df) == PK_OK && df.struct_size == sizeof df && df.producer == -1 && df.next == -1
          && df.bn_weight == -1 && df.bn_bias == -1 && df.bn_mean == -1 && df.bn_var == -1 && df.epsilon == 1e-5
          && df.dampening == 0.01 && df.activation == PK_ACTIVATION_RELU && df.num_threads == 0, "pk_data_free_options_init");
}

int main(int argc, char **argv) {
    const char *folder = argc > 1 ? argv[1] : "Tests/vectors";
    CHECK(pk_version_number() == PK_VERSION_NUMBER, "runtime version %d, header %d", pk_version_number(), PK_VERSION_NUMBER);
    CHECK(strcmp(pk_version_string(), PK_VERSION_STRING) == 0, "version string %s", pk_version_string());
    CHECK(strcmp(pk_last_error(), "") == 0, "last error starts empty");
    test_init_defaults();
    test_vectors(folder);
    test_bad_input();
    test_apply_and_sparsity();
    test_stats();
    test_sparsegpt(folder);
    test_admm(folder);
    test_permutation(folder);
    test_thread_local_errors();
    test_sparse_formats();
    test_structure_vectors(folder);
    test_structure_compaction_and_errors();
#ifdef __cplusplus
    printf("C++17: ");
#else
    printf("C99: ");
#endif
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
