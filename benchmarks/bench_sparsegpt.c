/* SparseGPT speed on a 4096 x 4096 layer with the Hessian of 4096 tokens, against OpenBLAS doing the
 * underlying work alone. Prints "name seconds" lines (best of N); bench_sparsegpt.py adds numpy and
 * prints the ratios. Usage: bench_sparsegpt [repeats] [size] [tokens] [num_threads] */
#define _POSIX_C_SOURCE 199309L
#include <prunekit.h>

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_common.h"

static uint64_t state = 0x9E3779B97F4A7C15ULL;
static float normal(void) { /* sum of 4 uniforms, centred: cheap and good enough here */
    float s = 0;
    for (int i = 0; i < 4; i++) {
        state = state * 6364136223846793005ULL + 1442695040888963407ULL;
        s += (float)(state >> 40) * (1.0f / 16777216.0f);
    }
    return (s - 2.0f) * 1.7320508f;
}

#define CHECK(call) do { pk_status s_ = (call); if (s_ != PK_OK) { fprintf(stderr, "%s\n", pk_last_error()); return 1; } } while (0)

int main(int argc, char **argv) {
    int repeats = argc > 1 ? atoi(argv[1]) : 2;
    int n = argc > 2 ? atoi(argv[2]) : 4096, tokens = argc > 3 ? atoi(argv[3]) : 4096;
    int threads = argc > 4 ? atoi(argv[4]) : 0;
    float *x = malloc(sizeof(float) * (size_t)tokens * n), *w = malloc(sizeof(float) * (size_t)n * n);
    float *out = malloc(sizeof(float) * (size_t)n * n);
    double *xd = malloc(sizeof(double) * (size_t)tokens * n), *g = calloc((size_t)n * n, sizeof(double));
    double *h = malloc(sizeof(double) * (size_t)n * n);
    uint8_t *mask = malloc((size_t)n * n);
    if (!x || !w || !out || !xd || !g || !h || !mask) return 1;
    /* Correlated inputs: each feature mixes its neighbour. */
    for (int t = 0; t < tokens; t++) {
        float prev = normal();
        for (int j = 0; j < n; j++) { float v = normal(); x[(size_t)t * n + j] = v + 0.5f * prev; prev = v; }
    }
    for (size_t i = 0; i < (size_t)n * n; i++) w[i] = normal();
    for (size_t i = 0; i < (size_t)tokens * n; i++) xd[i] = x[i];

    double best_syrk = 1e9, best_stats = 1e9, best_prune = 1e9, best_gemm = 1e9;
    /* The multiply-adds of the algorithm: cross-block updates rows*cols^2/2, in-block rows*cols*B/2,
     * and SparseGPT's three factorisations (Cholesky, inverse, Cholesky) ~ 4/3 cols^3 flops = 2/3 cols^3
     * MACs. PruneKit does one Cholesky and 128 x 128 block inverses instead, so it does fewer; the
     * count stays the algorithm's as published. */
    double macs = (double)n * n * n / 2 + (double)n * n * 128 / 2 + 2.0 / 3.0 * (double)n * n * n;
    int k_equiv = (int)(macs / ((double)n * n));
    float *gemm_c = calloc((size_t)n * n, sizeof(float)), *gemm_b = malloc(sizeof(float) * (size_t)k_equiv * n);
    float *gemm_a = malloc(sizeof(float) * (size_t)n * k_equiv);
    if (!gemm_c || !gemm_a || !gemm_b) return 1;
    for (size_t i = 0; i < (size_t)k_equiv * n; i++) { gemm_a[i] = normal(); gemm_b[i] = normal(); }

    for (int r = 0; r < repeats; r++) {
        double t0 = now();
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, n, tokens, 1.0, xd, n, 0.0, g, n);
        double t1 = now();
        pk_stats *stats = NULL;
        CHECK(pk_stats_create_gram(n, &stats));
        pk_matrix batch = {x, tokens, n, n, PK_DTYPE_FLOAT32, 0};
        double t2 = now();
        CHECK(pk_stats_update(stats, &batch));
        double t3 = now();
        CHECK(pk_stats_gram(stats, h, (int64_t)n * n));
        pk_stats_free(stats);
        pk_matrix wm = {w, n, n, n, PK_DTYPE_FLOAT32, 0}, om = {out, n, n, n, PK_DTYPE_FLOAT32, 0};
        pk_reconstruction_options o;
        pk_reconstruction_options_init(&o);
        o.num_threads = threads;
        double t4 = now();
        CHECK(pk_sparsegpt(&wm, h, n, &o, mask, &om));
        double t5 = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, k_equiv, 1.0f, gemm_a, k_equiv, gemm_b, n, 0.0f, gemm_c, n);
        double t6 = now();
        if (t1 - t0 < best_syrk) best_syrk = t1 - t0;
        if (t3 - t2 < best_stats) best_stats = t3 - t2;
        if (t5 - t4 < best_prune) best_prune = t5 - t4;
        if (t6 - t5 < best_gemm) best_gemm = t6 - t5;
    }
    printf("size %d\ntokens %d\n", n, tokens);
    printf("dsyrk_alone %.6f\n", best_syrk);
    printf("pk_stats_update_gram %.6f\n", best_stats);
    printf("pk_sparsegpt_float32 %.6f\n", best_prune);
    printf("sgemm_equivalent %.6f\n", best_gemm);
    printf("equivalent_gmacs %.3f\n", macs / 1e9);
    return 0;
}
