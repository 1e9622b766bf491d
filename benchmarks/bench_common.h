/* Shared by the C benchmarks: a monotonic clock and a seeded uniform generator (so every run
 * times the same data). Define _POSIX_C_SOURCE before including. */
#ifndef PRUNEKIT_BENCH_COMMON_H
#define PRUNEKIT_BENCH_COMMON_H
#include <stdint.h>
#include <time.h>

static inline double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* A 64-bit LCG; uniform() returns its top 24 bits scaled to [0, 1). */
static uint64_t bench_state = 0x853c49e6748fea9bULL;
static inline float uniform(void) {
    bench_state = bench_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)(bench_state >> 40) * (1.0f / 16777216.0f);
}
#endif
