/* Shared handles from many threads (run under ThreadSanitizer by `make sanitize`, and plain by
 * `make test`). Eight threads update, merge into, read and serialize the same two accumulators
 * while two more create and free handles of their own and a reader calls through handles that
 * may have just been freed (it must get PK_OK or PK_ERROR_INVALID_ARGUMENT, never someone
 * else's accumulator or a crash). Ends with "N passed, N failed". */
#include <prunekit.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { WORKERS = 8, ROUNDS = 200, FEATURES = 16, TOKENS = 3, CHURNERS = 2 };

static pk_stats *shared_a, *shared_b;
static pk_stats *volatile recent[CHURNERS]; /* handles the churners freed or are about to free */
static pthread_mutex_t recent_lock = PTHREAD_MUTEX_INITIALIZER;
static int errors[WORKERS + 2 * CHURNERS];

static void *worker(void *arg) {
    int id = (int)(size_t)arg;
    double x[TOKENS * FEATURES];
    for (int i = 0; i < TOKENS * FEATURES; i++) x[i] = (double)((i + id) % 7) - 3.0;
    pk_matrix batch = {x, TOKENS, FEATURES, FEATURES, PK_DTYPE_FLOAT64, 0};
    pk_stats *mine = NULL;
    if (pk_stats_create(FEATURES, &mine) != PK_OK) { errors[id]++; return NULL; }
    double out[FEATURES];
    uint8_t *bytes = (uint8_t *)malloc(65536);
    for (int round = 0; round < ROUNDS; round++) {
        if (pk_stats_update(shared_a, &batch) != PK_OK) errors[id]++;
        if (pk_stats_update(mine, &batch) != PK_OK) errors[id]++;
        if (round % 10 == 0 && pk_stats_merge(shared_b, mine) != PK_OK) errors[id]++;
        if (pk_stats_l2_norm(shared_a, out, FEATURES) != PK_OK) errors[id]++;
        size_t written = 0;
        if (pk_stats_serialize(shared_b, bytes, 65536, &written) != PK_OK) errors[id]++;
        pk_stats *copy = NULL;
        if (pk_stats_deserialize(bytes, written, &copy) != PK_OK) errors[id]++;
        pk_stats_free(copy);
    }
    free(bytes);
    pk_stats_free(mine);
    return NULL;
}

static void *churner(void *arg) {
    int id = (int)(size_t)arg;
    for (int round = 0; round < ROUNDS * 5; round++) {
        pk_stats *s = NULL;
        if (pk_stats_create(FEATURES, &s) != PK_OK) { errors[WORKERS + id]++; continue; }
        pthread_mutex_lock(&recent_lock);
        recent[id] = s;
        pthread_mutex_unlock(&recent_lock);
        pk_stats_free(s);
    }
    return NULL;
}

/* Calls through handles the churners may already have freed. */
static void *stale_reader(void *arg) {
    int id = (int)(size_t)arg;
    for (int round = 0; round < ROUNDS * 5; round++) {
        pthread_mutex_lock(&recent_lock);
        pk_stats *s = recent[id];
        pthread_mutex_unlock(&recent_lock);
        if (!s) continue;
        int64_t count = -1;
        pk_status status = pk_stats_count(s, &count);
        if (!((status == PK_OK && count == 0) || (status == PK_ERROR_INVALID_ARGUMENT && count == -1)))
            errors[WORKERS + CHURNERS + id]++;
    }
    return NULL;
}

int main(void) {
    int passed = 0, failed = 0;
    if (pk_stats_create(FEATURES, &shared_a) != PK_OK || pk_stats_create(FEATURES, &shared_b) != PK_OK) {
        printf("create failed: %s\n0 passed, 1 failed\n", pk_last_error());
        return 1;
    }
    /* Every call once on this thread first: the library's global constants are initialized on
     * first use through the Swift runtime's once, which ThreadSanitizer does not see (the runtime
     * is not instrumented), so a first use from two threads at once would be reported as a race. */
    {
        double x[FEATURES] = {0};
        pk_matrix batch = {x, 1, FEATURES, FEATURES, PK_DTYPE_FLOAT64, 0};
        pk_stats *warm = NULL, *copy = NULL;
        uint8_t bytes[4096];
        size_t written = 0;
        int64_t count = 0;
        pk_stats_create(FEATURES, &warm);
        pk_stats_update(warm, &batch);
        pk_stats_merge(warm, warm);
        pk_stats_l2_norm(warm, x, FEATURES);
        pk_stats_serialize(warm, bytes, sizeof bytes, &written);
        pk_stats_deserialize(bytes, written, &copy);
        pk_stats_free(copy);
        pk_stats_free(warm);
        pk_stats_count(warm, &count); /* an error: the message storage too */
    }
    pthread_t threads[WORKERS + 2 * CHURNERS];
    for (int i = 0; i < WORKERS; i++) pthread_create(&threads[i], NULL, worker, (void *)(size_t)i);
    for (int i = 0; i < CHURNERS; i++) {
        pthread_create(&threads[WORKERS + i], NULL, churner, (void *)(size_t)i);
        pthread_create(&threads[WORKERS + CHURNERS + i], NULL, stale_reader, (void *)(size_t)i);
    }
    for (int i = 0; i < WORKERS + 2 * CHURNERS; i++) pthread_join(threads[i], NULL);
    int total_errors = 0;
    for (int i = 0; i < WORKERS + 2 * CHURNERS; i++) total_errors += errors[i];
    if (total_errors == 0) passed++; else { failed++; printf("FAIL: %d calls failed or reached the wrong accumulator\n", total_errors); }
    int64_t count = 0;
    pk_stats_count(shared_a, &count);
    if (count == (int64_t)WORKERS * ROUNDS * TOKENS) passed++;
    else { failed++; printf("FAIL: shared count %lld, expected %d\n", (long long)count, WORKERS * ROUNDS * TOKENS); }
    /* Each worker merged its own accumulator (TOKENS * (round + 1) tokens at rounds 0, 10, ...). */
    int64_t expected_b = 0;
    for (int round = 0; round < ROUNDS; round += 10) expected_b += (int64_t)WORKERS * TOKENS * (round + 1);
    pk_stats_count(shared_b, &count);
    if (count == expected_b) passed++;
    else { failed++; printf("FAIL: merged count %lld, expected %lld\n", (long long)count, (long long)expected_b); }
    pk_stats_free(shared_a);
    pk_stats_free(shared_b);
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
