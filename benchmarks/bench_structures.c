/* Times structured pruning through the C API on an 8-layer stack of MLP pairs (up [5632 x 2048]
 * whose rows and down [2048 x 5632] whose columns are the hidden channels; float32): scoring and
 * selection (L2 norms, one global ranking across the 8 groups at 50%), compaction of every
 * member, and one plain pass of memory over all the weights. Also the memory floor of these steps
 * with two threads: a parallel read of every weight (what scoring must do) and a parallel copy of
 * the bytes compaction writes plus a read of the ones it must fetch but drops (a quarter of the
 * weights: the dropped columns of down share cache lines with the kept ones). Prints
 * "name seconds" lines (best of N); benchmarks/bench_structures.py runs this and the numpy
 * reference and prints ratios. */
#define _POSIX_C_SOURCE 199309L
#include <prunekit.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LAYERS 8

#include "bench_common.h"

/* One of two threads of the floor: reads (XOR) its half of each buffer of `read`, and copies its
 * half of each (source, destination, bytes) of `copy`. */
typedef struct {
    const float *const *read;
    int64_t read_count, read_floats;
    const float *const *copy_from;
    float *const *copy_to;
    int64_t copy_count, copy_floats;
    int part;
    uint64_t sink;
} floor_work;

static void *floor_thread(void *p) {
    floor_work *w = (floor_work *)p;
    uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    int64_t half = w->read_floats / 2 / 8 * 8;
    for (int64_t b = 0; b < w->read_count; b++) {
        const uint64_t *x = (const uint64_t *)(w->read[b] + (w->part ? half : 0));
        int64_t words = (w->part ? w->read_floats - half : half) / 2;
        for (int64_t i = 0; i + 4 <= words; i += 4) {
            a0 ^= x[i];
            a1 ^= x[i + 1];
            a2 ^= x[i + 2];
            a3 ^= x[i + 3];
        }
    }
    int64_t chalf = w->copy_floats / 2;
    for (int64_t b = 0; b < w->copy_count; b++) {
        int64_t start = w->part ? chalf : 0, count = w->part ? w->copy_floats - chalf : chalf;
        memcpy(w->copy_to[b] + start, w->copy_from[b] + start, sizeof(float) * (size_t)count);
    }
    w->sink = a0 ^ a1 ^ a2 ^ a3;
    return NULL;
}

/* Two threads doing `read` and `copy` of floor_work; seconds. */
static double floor_pass(floor_work w) {
    pthread_t t[2];
    floor_work parts[2] = {w, w};
    double t0 = now();
    for (int i = 0; i < 2; i++) {
        parts[i].part = i;
        if (pthread_create(&t[i], NULL, floor_thread, &parts[i]) != 0) return -1;
    }
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    return now() - t0;
}

int main(int argc, char **argv) {
    const int64_t d = 2048, hidden = 5632, n = d * hidden;
    int repeats = argc > 1 ? atoi(argv[1]) : 3;
    int threads = argc > 2 ? atoi(argv[2]) : 0;
    float *up[LAYERS], *down[LAYERS], *up_out[LAYERS], *down_out[LAYERS];
    pk_group_member members[LAYERS][2];
    pk_group groups[LAYERS];
    memset(members, 0, sizeof members);
    memset(groups, 0, sizeof groups);
    for (int l = 0; l < LAYERS; l++) {
        up[l] = (float *)malloc(sizeof(float) * (size_t)n);
        down[l] = (float *)malloc(sizeof(float) * (size_t)n);
        up_out[l] = (float *)malloc(sizeof(float) * (size_t)n);
        down_out[l] = (float *)malloc(sizeof(float) * (size_t)n);
        if (!up[l] || !down[l] || !up_out[l] || !down_out[l]) return 1;
        for (int64_t i = 0; i < n; i++) up[l][i] = uniform() * 2.0f - 1.0f;
        for (int64_t i = 0; i < n; i++) down[l][i] = (uniform() * 2.0f - 1.0f) * (1.0f + 0.1f * (float)l);
        memset(up_out[l], 0, sizeof(float) * (size_t)n);   /* outputs are the caller's, already in memory */
        memset(down_out[l], 0, sizeof(float) * (size_t)n);
        pk_matrix a = {up[l], hidden, d, d, PK_DTYPE_FLOAT32, 0}, b = {down[l], d, hidden, hidden, PK_DTYPE_FLOAT32, 0};
        members[l][0].tensor = a;
        members[l][0].axis = PK_AXIS_ROWS;
        members[l][0].span = 1;
        members[l][0].scored = 1;
        members[l][1].tensor = b;
        members[l][1].axis = PK_AXIS_COLS;
        members[l][1].span = 1;
        members[l][1].scored = 1;
        groups[l].members = members[l];
        groups[l].member_count = 2;
        groups[l].min_keep = 64;
    }
    pk_structure_options o;
    pk_structure_options_init(&o);
    o.mode = PK_SELECT_GLOBAL;
    o.ratio = 0.5;
    o.multiple = 64;
    o.num_threads = threads;
    uint8_t *keep = (uint8_t *)malloc((size_t)(LAYERS * hidden));
    double best_pass = 1e9, best_select = 1e9, best_compact = 1e9, best_read2 = 1e9, best_copy2 = 1e9;
    const float *all[2 * LAYERS], *down_quarters[LAYERS], *halves_from[2 * LAYERS];
    float *halves_to[2 * LAYERS];
    for (int l = 0; l < LAYERS; l++) {
        all[2 * l] = up[l];
        all[2 * l + 1] = down[l];
        down_quarters[l] = down[l] + n / 2;
        halves_from[2 * l] = up[l];
        halves_from[2 * l + 1] = down[l];
        halves_to[2 * l] = up_out[l];
        halves_to[2 * l + 1] = down_out[l];
    }
    floor_work read_all = {all, 2 * LAYERS, n, NULL, NULL, 0, 0, 0, 0};
    floor_work copy_halves = {down_quarters, LAYERS, n / 2, halves_from, halves_to, 2 * LAYERS, n / 2, 0, 0};
    volatile uint32_t sink = 0;
    int64_t kept_total = 0;
    for (int r = 0; r < repeats; r++) {
        double t0 = now();
        uint32_t acc = 0;
        for (int l = 0; l < LAYERS; l++) {
            const uint32_t *x = (const uint32_t *)up[l], *y = (const uint32_t *)down[l];
            for (int64_t i = 0; i < n; i++) acc ^= x[i];
            for (int64_t i = 0; i < n; i++) acc ^= y[i];
        }
        sink = acc;
        double t1 = now();
        if (pk_select_structures(groups, LAYERS, &o, keep, NULL) != PK_OK) {
            fprintf(stderr, "select: %s\n", pk_last_error());
            return 1;
        }
        double t2 = now();
        kept_total = 0;
        for (int l = 0; l < LAYERS; l++) {
            int64_t kept = 0;
            for (int64_t i = 0; i < hidden; i++) kept += keep[l * hidden + i];
            kept_total += kept;
            pk_matrix outs[2] = {{up_out[l], kept, d, d, PK_DTYPE_FLOAT32, 0}, {down_out[l], d, kept, kept, PK_DTYPE_FLOAT32, 0}};
            if (pk_compact_group(&groups[l], keep + l * hidden, NULL, outs, NULL) != PK_OK) {
                fprintf(stderr, "compact: %s\n", pk_last_error());
                return 1;
            }
        }
        double t3 = now();
        double read2 = floor_pass(read_all), copy2 = floor_pass(copy_halves);
        if (read2 < 0 || copy2 < 0) return 1;
        if (read2 < best_read2) best_read2 = read2;
        if (copy2 < best_copy2) best_copy2 = copy2;
        if (t1 - t0 < best_pass) best_pass = t1 - t0;
        if (t2 - t1 < best_select) best_select = t2 - t1;
        if (t3 - t2 < best_compact) best_compact = t3 - t2;
    }
    (void)sink;
    printf("pass %.6f\nselect %.6f\ncompact %.6f\nkept %lld\nfloor_read %.6f\nfloor_compact %.6f\n", best_pass,
           best_select, best_compact, (long long)kept_total, best_read2, best_copy2);
    return 0;
}
