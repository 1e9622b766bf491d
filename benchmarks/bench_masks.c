/* Times PruneKit masks through the C API on a 4096 x 11008 float32 matrix and one plain pass of
 * memory over the same matrix; prints one "name seconds" line per figure (best of N runs).
 * benchmarks/bench_masks.py runs this and the numpy references and prints the ratios. */
#define _POSIX_C_SOURCE 199309L
#include <prunekit.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_common.h"

int main(int argc, char **argv) {
    int64_t rows = 4096, cols = 11008;
    int repeats = argc > 1 ? atoi(argv[1]) : 5;
    int threads = argc > 2 ? atoi(argv[2]) : 0;
    float *w = (float *)malloc(sizeof(float) * (size_t)(rows * cols));
    float *norms = (float *)malloc(sizeof(float) * (size_t)cols);
    uint8_t *mask = (uint8_t *)malloc((size_t)(rows * cols));
    if (!w || !norms || !mask) return 1;
    for (int64_t i = 0; i < rows * cols; i++) w[i] = uniform() * 2.0f - 1.0f;
    for (int64_t j = 0; j < cols; j++) norms[j] = 0.1f + 10.0f * uniform();

    pk_matrix m = {w, rows, cols, cols, PK_DTYPE_FLOAT32, 0};
    pk_criterion wanda;
    pk_criterion_init(&wanda);
    wanda.kind = PK_CRITERION_WANDA;
    wanda.feature_values = norms;
    wanda.feature_count = cols;
    pk_selection row, nm;
    pk_selection_init(&row);
    row.scope = PK_SCOPE_ROW;
    row.sparsity = 0.5;
    row.num_threads = threads;
    pk_selection_init(&nm);
    nm.scope = PK_SCOPE_NM;
    nm.n = 2;
    nm.m = 4;
    nm.num_threads = threads;

    double best_row = 1e9, best_nm = 1e9, best_pass = 1e9;
    volatile float sink = 0;
    for (int r = 0; r < repeats; r++) {
        double t0 = now();
        /* One read of every element: an integer reduction the compiler vectorizes. */
        const uint32_t *bits = (const uint32_t *)w;
        uint32_t acc = 0;
        for (int64_t i = 0; i < rows * cols; i++) acc ^= bits[i];
        sink = (float)acc;
        double t1 = now();
        if (pk_mask(&m, &wanda, &row, mask) != PK_OK) { fprintf(stderr, "%s\n", pk_last_error()); return 1; }
        double t2 = now();
        if (pk_mask(&m, &wanda, &nm, mask) != PK_OK) { fprintf(stderr, "%s\n", pk_last_error()); return 1; }
        double t3 = now();
        if (t1 - t0 < best_pass) best_pass = t1 - t0;
        if (t2 - t1 < best_row) best_row = t2 - t1;
        if (t3 - t2 < best_nm) best_nm = t3 - t2;
    }
    (void)sink;
    printf("memory_pass %.6f\n", best_pass);
    printf("c_wanda_row50 %.6f\n", best_row);
    printf("c_wanda_2of4 %.6f\n", best_nm);
    free(w); free(norms); free(mask);
    return 0;
}
