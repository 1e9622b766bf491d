/* The inference-time functions (pk_top_channels, pk_gather, pk_random_channel_mask) allocate
 * nothing per call and agree across threads; pk_low_rank writes nothing on error; the data-free
 * compensation (pk_compact_group_data_free) equals the numpy reference and writes nothing on error.
 * Allocation is counted by replacing malloc and its relatives in this executable (glibc lets a
 * program do so; libprunekit.so's calls, the Swift runtime's included, then land here), per
 * thread while a flag is set. Compiled as C99 and as C++17. */
#include <prunekit.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "udfc_vectors.h"

#ifdef __cplusplus
extern "C" {
#endif
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);
#ifdef __cplusplus
}
#endif

static __thread int counting;
static long allocations;

static void count_one(void) {
    if (counting) __atomic_fetch_add(&allocations, 1, __ATOMIC_RELAXED);
}

#ifdef __cplusplus
extern "C" {
#endif
void *malloc(size_t size) { count_one(); return __libc_malloc(size); }
void *calloc(size_t n, size_t size) { count_one(); return __libc_calloc(n, size); }
void *realloc(void *p, size_t size) { count_one(); return __libc_realloc(p, size); }
void free(void *p) { __libc_free(p); }
void *memalign(size_t alignment, size_t size) { count_one(); return __libc_memalign(alignment, size); }
void *aligned_alloc(size_t alignment, size_t size) { count_one(); return __libc_memalign(alignment, size); }
int posix_memalign(void **out, size_t alignment, size_t size) {
    count_one();
    void *p = __libc_memalign(alignment, size);
    if (!p) return 12; /* ENOMEM */
    *out = p;
    return 0;
}
#ifdef __cplusplus
}
#endif

static int failures;
#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: check failed: %s (%s)\n", __FILE__, __LINE__, #cond, \
                    pk_last_error());                                                \
            failures++;                                                              \
        }                                                                            \
    } while (0)

enum { SAMPLES = 64, CHANNELS = 1536, OUT = 384, K = 768, CALLS = 200, THREADS = 4 };

static float scores[SAMPLES * CHANNELS];
static float weights_t[CHANNELS * OUT]; /* the next layer's transpose: [channels, out] */
static float importance[CHANNELS];
static int64_t reference_indices[SAMPLES * K];
static uint8_t reference_mask[CHANNELS];

static uint64_t lcg_state = 12345;
static float uniform(void) {
    lcg_state = lcg_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)(lcg_state >> 40) * (1.0f / 16777216.0f);
}

/* One serving step on the calling thread's buffers; returns the number of mismatches against the
 * single-threaded reference. */
typedef struct worker {
    int64_t indices[SAMPLES * K];
    float gathered[K * OUT];
    uint8_t mask[CHANNELS];
    long allocations_seen;
    int mismatches;
} worker;

static int serve(worker *w, int call) {
    int bad = 0;
    pk_matrix s = {scores, SAMPLES, CHANNELS, CHANNELS, PK_DTYPE_FLOAT32, 0};
    if (pk_top_channels(&s, K, 1, w->indices) != PK_OK) return 1;
    bad += memcmp(w->indices, reference_indices, sizeof reference_indices) != 0;
    int sample = call % SAMPLES;
    pk_matrix src = {weights_t, CHANNELS, OUT, OUT, PK_DTYPE_FLOAT32, 0};
    pk_matrix dst = {w->gathered, K, OUT, OUT, PK_DTYPE_FLOAT32, 0};
    if (pk_gather(&src, PK_AXIS_ROWS, w->indices + sample * K, K, &dst) != PK_OK) return bad + 1;
    int64_t row = w->indices[sample * K + call % K];
    bad += memcmp(w->gathered + (call % K) * OUT, weights_t + row * OUT, OUT * sizeof(float)) != 0;
    if (pk_random_channel_mask(importance, CHANNELS, 0.5, 0.5, 77, w->mask) != PK_OK) return bad + 1;
    bad += memcmp(w->mask, reference_mask, CHANNELS) != 0;
    return bad;
}

static void *thread_main(void *arg) {
    worker *w = (worker *)arg;
    counting = 1;
    for (int call = 0; call < CALLS; call++) w->mismatches += serve(w, call);
    counting = 0;
    return NULL;
}

static void test_no_allocation_and_threads(void) {
    for (int i = 0; i < SAMPLES * CHANNELS; i++) scores[i] = floorf(uniform() * 64) - 32; /* ties */
    for (int i = 0; i < CHANNELS * OUT; i++) weights_t[i] = uniform() - 0.5f;
    for (int i = 0; i < CHANNELS; i++) importance[i] = uniform();
    pk_matrix s = {scores, SAMPLES, CHANNELS, CHANNELS, PK_DTYPE_FLOAT32, 0};
    CHECK(pk_top_channels(&s, K, 1, reference_indices) == PK_OK);
    CHECK(pk_random_channel_mask(importance, CHANNELS, 0.5, 0.5, 77, reference_mask) == PK_OK);
    /* The reference itself: sorted, and no dropped channel scores above a kept one. */
    for (int t = 0; t < SAMPLES; t++) {
        const int64_t *idx = reference_indices + t * K;
        uint8_t kept[CHANNELS] = {0};
        for (int i = 0; i < K; i++) {
            if (i) CHECK(idx[i] > idx[i - 1]);
            kept[idx[i]] = 1;
        }
        float lowest_kept = 1e30f, highest_dropped = -1e30f;
        for (int c = 0; c < CHANNELS; c++) {
            float v = fabsf(scores[t * CHANNELS + c]);
            if (kept[c]) lowest_kept = v < lowest_kept ? v : lowest_kept;
            else highest_dropped = v > highest_dropped ? v : highest_dropped;
        }
        CHECK(lowest_kept >= highest_dropped);
    }
    for (int c = 0; c < CHANNELS; c++) if (importance[c] >= 0.5f) CHECK(reference_mask[c] == 1);

    /* The hooks see the library's allocations: a call known to allocate is counted. */
    static worker single;
    allocations = 0;
    counting = 1;
    pk_stats *stats = NULL;
    CHECK(pk_stats_create(8, &stats) == PK_OK);
    counting = 0;
    pk_stats_free(stats);
    CHECK(allocations > 0);

    /* One thread, then THREADS at once: no allocation in any call, the same results. */
    serve(&single, 0); /* first use of the thread's state */
    allocations = 0;
    thread_main(&single);
    CHECK(single.mismatches == 0);
    CHECK(allocations == 0);
    printf("allocations in %d serving steps on one thread: %ld\n", CALLS, allocations);

    static worker workers[THREADS];
    pthread_t threads[THREADS];
    allocations = 0;
    for (int i = 0; i < THREADS; i++) CHECK(pthread_create(&threads[i], NULL, thread_main, &workers[i]) == 0);
    for (int i = 0; i < THREADS; i++) pthread_join(threads[i], NULL);
    for (int i = 0; i < THREADS; i++) CHECK(workers[i].mismatches == 0);
    CHECK(allocations == 0);
    printf("allocations in %d x %d serving steps on %d threads: %ld\n", THREADS, CALLS, THREADS, allocations);
}

static void test_errors_write_nothing(void) {
    float bad[2 * 4] = {1, 2, 3, 4, 5, 6, NAN, 8};
    int64_t out[2 * 2] = {-1, -1, -1, -1};
    pk_matrix s = {bad, 2, 4, 4, PK_DTYPE_FLOAT32, 0};
    CHECK(pk_top_channels(&s, 2, 0, out) == PK_ERROR_NON_FINITE);
    CHECK(strstr(pk_last_error(), "sample 1, channel 2") != NULL);
    CHECK(pk_top_channels(&s, 5, 0, out) == PK_ERROR_INVALID_ARGUMENT);
    CHECK(pk_top_channels(&s, 2, 2, out) == PK_ERROR_INVALID_ARGUMENT);
    CHECK(pk_top_channels(&s, 2, 0, NULL) == PK_ERROR_NULL_POINTER);
    for (int i = 0; i < 4; i++) CHECK(out[i] == -1);

    float src[3 * 2] = {1, 2, 3, 4, 5, 6}, dst[2 * 2] = {9, 9, 9, 9};
    int64_t idx[2] = {2, 3};
    pk_matrix sm = {src, 3, 2, 2, PK_DTYPE_FLOAT32, 0}, dm = {dst, 2, 2, 2, PK_DTYPE_FLOAT32, 0};
    CHECK(pk_gather(&sm, PK_AXIS_ROWS, idx, 2, &dm) == PK_ERROR_INVALID_ARGUMENT);
    CHECK(pk_gather(&sm, PK_AXIS_BLOCKS, idx, 2, &dm) == PK_ERROR_INVALID_ARGUMENT);
    for (int i = 0; i < 4; i++) CHECK(dst[i] == 9);
    idx[1] = 0;
    CHECK(pk_gather(&sm, PK_AXIS_ROWS, idx, 2, &dm) == PK_OK);
    CHECK(dst[0] == 5 && dst[1] == 6 && dst[2] == 1 && dst[3] == 2);

    uint8_t mask[3] = {7, 7, 7};
    float imp[3] = {0.1f, 0.2f, 0.3f};
    CHECK(pk_random_channel_mask(imp, 3, 0.2, 1.5, 1, mask) == PK_ERROR_INVALID_ARGUMENT);
    CHECK(pk_random_channel_mask(imp, 0, 0.2, 0.5, 1, mask) == PK_ERROR_INVALID_SHAPE);
    CHECK(pk_random_channel_mask(NULL, 3, 0.2, 0.5, 1, mask) == PK_ERROR_NULL_POINTER);
    for (int i = 0; i < 3; i++) CHECK(mask[i] == 7);

    /* Low rank: option checks and a too-small output leave everything as it was. */
    double w[4 * 3] = {1, 2, 3, 4, 5, 6, 7, 8, 10, 1, 0, 1};
    double h[3 * 3] = {2, 0.5, 0, 0.5, 1, 0.1, 0, 0.1, 3};
    double a[4 * 1], b[1 * 3], sv[3];
    for (int i = 0; i < 4; i++) a[i] = 7;
    for (int i = 0; i < 3; i++) b[i] = sv[i] = 7;
    int64_t rank = -5;
    pk_matrix wm = {w, 4, 3, 3, PK_DTYPE_FLOAT64, 0};
    pk_matrix am = {a, 4, 1, 1, PK_DTYPE_FLOAT64, 0}, bm = {b, 1, 3, 3, PK_DTYPE_FLOAT64, 0};
    pk_low_rank_options o;
    CHECK(pk_low_rank_options_init(&o) == PK_OK);
    CHECK(o.struct_size == sizeof o && o.rank == 0 && o.energy == 0 && o.dampening == 0.01);
    CHECK(pk_low_rank(&wm, h, 3, &o, &am, &bm, &rank, sv) == PK_ERROR_INVALID_ARGUMENT); /* neither set */
    o.rank = 2;
    CHECK(pk_low_rank(&wm, h, 3, &o, &am, &bm, &rank, sv) == PK_ERROR_BUFFER_TOO_SMALL);
    o.rank = 4;
    CHECK(pk_low_rank(&wm, h, 3, &o, &am, &bm, &rank, sv) == PK_ERROR_INVALID_ARGUMENT);
    o.rank = 0;
    o.energy = 1.0;
    CHECK(pk_low_rank(&wm, h, 3, &o, &am, &bm, &rank, sv) == PK_ERROR_BUFFER_TOO_SMALL);
    CHECK(strstr(pk_last_error(), "rank 3 needs 3") != NULL);
    o.struct_size = 8;
    CHECK(pk_low_rank(&wm, h, 3, &o, &am, &bm, &rank, sv) == PK_ERROR_STRUCT_SIZE);
    CHECK(rank == -5);
    for (int i = 0; i < 4; i++) CHECK(a[i] == 7);
    for (int i = 0; i < 3; i++) CHECK(b[i] == 7 && sv[i] == 7);
    o.struct_size = sizeof o;
    o.energy = 0;
    o.rank = 1;
    CHECK(pk_low_rank(&wm, h, 3, &o, &am, &bm, &rank, sv) == PK_OK);
    CHECK(rank == 1 && sv[0] >= sv[1] && sv[1] >= sv[2] && sv[2] > 0);
    double norm = 0;
    for (int i = 0; i < 4; i++) norm += a[i] * a[i];
    CHECK(fabs(norm - 1) < 1e-12);
}

/* The UDFC chain: producer 6 x 8 (a conv [6, 2, 2, 2]), the four batch-norm vectors, the next conv
 * [3, 6, 2, 2] viewed as 3 x 24 (span 4). */
typedef struct udfc_case {
    double conv[UDFC_N * UDFC_FILTER], gamma[UDFC_N], beta[UDFC_N], mean[UDFC_N], var[UDFC_N];
    double next[UDFC_ROWS * UDFC_N * UDFC_SPAN];
    double out_conv[UDFC_KEPT * UDFC_FILTER], out_vec[4][UDFC_KEPT], out_next[UDFC_ROWS * UDFC_KEPT * UDFC_SPAN];
    pk_group_member members[6];
    pk_matrix outputs[6];
    pk_group group;
} udfc_case;

static pk_matrix matrix_of(double *data, int64_t rows, int64_t cols) {
    pk_matrix m;
    memset(&m, 0, sizeof m);
    m.data = data;
    m.rows = rows;
    m.cols = cols;
    m.row_stride = cols;
    m.dtype = PK_DTYPE_FLOAT64;
    return m;
}

static void udfc_setup(udfc_case *c) {
    memcpy(c->conv, udfc_conv, sizeof c->conv);
    memcpy(c->gamma, udfc_gamma, sizeof c->gamma);
    memcpy(c->beta, udfc_beta, sizeof c->beta);
    memcpy(c->mean, udfc_mean, sizeof c->mean);
    memcpy(c->var, udfc_var, sizeof c->var);
    memcpy(c->next, udfc_next, sizeof c->next);
    double *vectors[4] = {c->gamma, c->beta, c->mean, c->var};
    memset(c->members, 0, sizeof c->members);
    c->members[0].tensor = matrix_of(c->conv, UDFC_N, UDFC_FILTER);
    c->members[0].axis = PK_AXIS_ROWS;
    c->members[0].scored = 1;
    c->members[0].span = 1;
    c->outputs[0] = matrix_of(c->out_conv, UDFC_KEPT, UDFC_FILTER);
    for (int i = 0; i < 4; i++) {
        c->members[1 + i].tensor = matrix_of(vectors[i], 1, UDFC_N);
        c->members[1 + i].axis = PK_AXIS_COLS;
        c->members[1 + i].span = 1;
        c->outputs[1 + i] = matrix_of(c->out_vec[i], 1, UDFC_KEPT);
    }
    c->members[5].tensor = matrix_of(c->next, UDFC_ROWS, UDFC_N * UDFC_SPAN);
    c->members[5].axis = PK_AXIS_COLS;
    c->members[5].span = UDFC_SPAN;
    c->outputs[5] = matrix_of(c->out_next, UDFC_ROWS, UDFC_KEPT * UDFC_SPAN);
    memset(&c->group, 0, sizeof c->group);
    c->group.members = c->members;
    c->group.member_count = 6;
    for (int i = 0; i < UDFC_KEPT * UDFC_FILTER; i++) c->out_conv[i] = 7;
    for (int i = 0; i < 4 * UDFC_KEPT; i++) c->out_vec[i / UDFC_KEPT][i % UDFC_KEPT] = 7;
    for (int i = 0; i < UDFC_ROWS * UDFC_KEPT * UDFC_SPAN; i++) c->out_next[i] = 7;
}

static void udfc_options(pk_data_free_options *o) {
    CHECK(pk_data_free_options_init(o) == PK_OK);
    CHECK(o->struct_size == sizeof *o && o->producer == -1 && o->epsilon == 1e-5 && o->dampening == 0.01 &&
          o->activation == PK_ACTIVATION_RELU);
    o->producer = 0;
    o->bn_weight = 1;
    o->bn_bias = 2;
    o->bn_mean = 3;
    o->bn_var = 4;
    o->next = 5;
}

static int close_to(double a, double b) { return fabs(a - b) <= 1e-12 * (1 + fabs(b)); }

static int untouched(const udfc_case *c, const double *shift) {
    for (int i = 0; i < UDFC_ROWS * UDFC_KEPT * UDFC_SPAN; i++)
        if (c->out_next[i] != 7) return 0;
    for (int i = 0; i < UDFC_KEPT * UDFC_FILTER; i++)
        if (c->out_conv[i] != 7) return 0;
    for (int i = 0; i < UDFC_ROWS; i++)
        if (shift[i] != 5) return 0;
    return 1;
}

static void test_data_free_compensation(void) {
    static udfc_case c;
    pk_data_free_options o;
    double shift[UDFC_ROWS];
    int64_t kept[UDFC_KEPT];
    const double *expected_next[2] = {udfc_relu_next, udfc_identity_next};
    const double *expected_shift[2] = {udfc_relu_shift, udfc_identity_shift};
    for (int variant = 0; variant < 2; variant++) {
        udfc_setup(&c);
        udfc_options(&o);
        if (variant == 1) {
            o.activation = PK_ACTIVATION_IDENTITY;
            o.dampening = 0.05;
        }
        CHECK(pk_compact_group_data_free(&c.group, udfc_keep, &o, c.outputs, kept, shift, UDFC_ROWS) == PK_OK);
        for (int i = 0; i < UDFC_ROWS * UDFC_KEPT * UDFC_SPAN; i++) CHECK(close_to(c.out_next[i], expected_next[variant][i]));
        for (int i = 0; i < UDFC_ROWS; i++) CHECK(close_to(shift[i], expected_shift[variant][i]));
        CHECK(kept[0] == 0 && kept[1] == 2 && kept[2] == 3 && kept[3] == 5);
        CHECK(c.out_vec[3][2] == udfc_var[3] && c.out_conv[UDFC_FILTER] == udfc_conv[2 * UDFC_FILTER]);
    }
    /* Bad input: a clear status, nothing written (outputs and the shift keep their sentinels). */
    struct { int what; pk_status status; const char *message; } bad[] = {
        {0, PK_ERROR_INVALID_ARGUMENT, "negative"},     {1, PK_ERROR_NON_FINITE, "nan"},
        {2, PK_ERROR_INVALID_ARGUMENT, "keeps no"},     {3, PK_ERROR_INVALID_SHAPE, NULL},
        {4, PK_ERROR_INVALID_SHAPE, "bias_shift_length"}, {5, PK_ERROR_INVALID_ARGUMENT, "must be set"},
        {6, PK_ERROR_STRUCT_SIZE, NULL},                {7, PK_ERROR_INVALID_ARGUMENT, "pk_activation"},
        {8, PK_ERROR_NON_FINITE, "inf"},                {9, PK_ERROR_NUMERIC, "dampening"},
        {10, PK_ERROR_NULL_POINTER, "options"},         {11, PK_ERROR_INVALID_ARGUMENT, "not split"},
    };
    for (size_t t = 0; t < sizeof bad / sizeof bad[0]; t++) {
        uint8_t keep[UDFC_N];
        memcpy(keep, udfc_keep, sizeof keep);
        int64_t length = UDFC_ROWS;
        udfc_setup(&c);
        udfc_options(&o);
        const pk_data_free_options *options = &o;
        for (int i = 0; i < UDFC_ROWS; i++) shift[i] = 5;
        switch (bad[t].what) {
        case 0: c.var[2] = -0.25; break;
        case 1: c.gamma[4] = NAN; break;
        case 2: memset(keep, 0, sizeof keep); break;
        case 3: c.members[2].tensor.cols = 5; break;
        case 4: length = 2; break;
        case 5: o.bn_mean = -1; break;
        case 6: o.struct_size = 8; break;
        case 7: o.activation = 7; break;
        case 8: c.next[5] = INFINITY; break;
        case 9:  /* 4 kept channels with 1-entry filters and no dampening: a singular covariance */
            c.members[0].tensor.cols = 1;
            c.members[0].tensor.row_stride = 1;
            c.outputs[0].cols = 1;
            c.outputs[0].row_stride = 1;
            o.dampening = 0;
            o.activation = PK_ACTIVATION_IDENTITY;
            c.var[3] = 1;
            break;
        case 10: options = NULL; break;
        case 11: o.producer = 5; o.next = 0; length = UDFC_N; break;
        }
        pk_status status = pk_compact_group_data_free(&c.group, keep, options, c.outputs, kept, shift, length);
        CHECK(status == bad[t].status);
        if (status != bad[t].status) fprintf(stderr, "case %d: status %d (%s)\n", bad[t].what, (int)status, pk_last_error());
        if (bad[t].message) CHECK(strstr(pk_last_error(), bad[t].message) != NULL);
        CHECK(untouched(&c, shift));
    }
}

int main(void) {
    test_data_free_compensation();
    test_errors_write_nothing();
    test_no_allocation_and_threads();
    if (failures) {
        fprintf(stderr, "%d checks failed\n", failures);
        return 1;
    }
    printf("test_methods: all checks passed\n");
    return 0;
}
