/* The inference-time functions (pk_top_channels, pk_gather, pk_random_channel_mask) allocate
 * nothing per call and agree across threads; pk_low_rank writes nothing on error.
 * Allocation is counted by replacing malloc and its relatives in this executable (glibc lets a
 * program do so; libprunekit.so's calls, the Swift runtime's included, then land here), per
 * thread while a flag is set. Compiled as C99 and as C++17. */
#include <prunekit.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

int main(void) {
    test_errors_write_nothing();
    test_no_allocation_and_threads();
    if (failures) {
        fprintf(stderr, "%d checks failed\n", failures);
        return 1;
    }
    printf("test_methods: all checks passed\n");
    return 0;
}
