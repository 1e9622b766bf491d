/* prune_layer: the main job until a real model arrives. Prunes one 1024 x 4096 linear layer
 * whose inputs have a few large-scale features and correlated features (as LLM activations do),
 * with every criterion
 * and selection, calibrating on one set of tokens and evaluating the layer's output error on a
 * disjoint set. Prints what it did.
 *
 *   make demo            (or: cc prune_layer.c -lprunekit -lm && ./a.out)
 */
#define _POSIX_C_SOURCE 199309L
#include <prunekit.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { ROWS = 1024, COLS = 4096, CALIBRATION = 2048, EVALUATION = 256, BATCH = 256 };

static uint64_t rng_state = 0x2545F4914F6CDD1DULL;
static double uniform(void) {
    rng_state ^= rng_state >> 12; rng_state ^= rng_state << 25; rng_state ^= rng_state >> 27;
    return (double)((rng_state * 2685821657736338717ULL) >> 11) * 0x1p-53;
}
static float normal(void) {
    double u = uniform() + 1e-12, v = uniform();
    return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}
static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

#define CHECK(call)                                                                      \
    do {                                                                                 \
        pk_status s_ = (call);                                                           \
        if (s_ != PK_OK) {                                                               \
            fprintf(stderr, "%s failed: %s (%s)\n", #call, pk_last_error(), pk_status_string(s_)); \
            exit(1);                                                                     \
        }                                                                                \
    } while (0)

/* Activations: per-feature scales spanning two orders of magnitude, a few outlier features, and
 * features correlated through a shared low-rank component (as real layer inputs are). */
enum { LATENT = 32 };
static float basis[LATENT][COLS];
static void activations(float *x, int tokens, const float *scale) {
    for (int t = 0; t < tokens; t++) {
        float a[LATENT];
        for (int l = 0; l < LATENT; l++) a[l] = normal();
        float *row = x + (size_t)t * COLS;
        for (int j = 0; j < COLS; j++) row[j] = 0.5f * normal();
        for (int l = 0; l < LATENT; l++)
            for (int j = 0; j < COLS; j++) row[j] += a[l] * basis[l][j];
        for (int j = 0; j < COLS; j++) row[j] *= scale[j];
    }
}

/* || (W - W') X^T ||_F / || W X^T ||_F over the evaluation tokens. */
static double output_error(const float *w, const float *pruned, const float *x) {
    double err = 0, ref = 0;
    for (int r = 0; r < ROWS; r++) {
        const float *a = w + (size_t)r * COLS, *b = pruned + (size_t)r * COLS;
        for (int t = 0; t < EVALUATION; t++) {
            const float *xt = x + (size_t)t * COLS;
            double full = 0, diff = 0;
            for (int j = 0; j < COLS; j++) {
                full += (double)a[j] * xt[j];
                diff += (double)(a[j] - b[j]) * xt[j];
            }
            err += diff * diff;
            ref += full * full;
        }
    }
    return sqrt(err / ref);
}

int main(void) {
    printf("PruneKit %s (header %s): pruning a %d x %d linear layer\n", pk_version_string(), PK_VERSION_STRING, ROWS, COLS);
    float *w = malloc(sizeof(float) * ROWS * COLS), *pruned = malloc(sizeof(float) * ROWS * COLS);
    float *scale = malloc(sizeof(float) * COLS), *x = malloc(sizeof(float) * BATCH * COLS);
    float *eval = malloc(sizeof(float) * EVALUATION * COLS);
    uint8_t *mask = malloc(ROWS * COLS);
    double *row_sparsity = malloc(sizeof(double) * ROWS);
    if (!w || !pruned || !scale || !x || !eval || !mask || !row_sparsity) return 1;
    for (size_t i = 0; i < (size_t)ROWS * COLS; i++) w[i] = 0.02f * normal();
    for (int j = 0; j < COLS; j++) scale[j] = (float)(0.1 * pow(100.0, uniform())) * (j % 97 == 0 ? 20.0f : 1.0f);
    for (int l = 0; l < LATENT; l++)
        for (int j = 0; j < COLS; j++) basis[l][j] = normal() / sqrtf((float)LATENT);

    /* Calibration: stream batches through an accumulator (never holding them all). */
    pk_stats *stats = NULL;
    CHECK(pk_stats_create_gram(COLS, &stats)); /* also keeps X^T X for SparseGPT */
    double t0 = now();
    for (int b = 0; b < CALIBRATION / BATCH; b++) {
        activations(x, BATCH, scale);
        pk_matrix batch = {x, BATCH, COLS, COLS, PK_DTYPE_FLOAT32, 0};
        CHECK(pk_stats_update(stats, &batch));
    }
    int64_t tokens = 0;
    CHECK(pk_stats_count(stats, &tokens));
    double *norm64 = malloc(sizeof(double) * COLS), *std64 = malloc(sizeof(double) * COLS);
    float *norm = malloc(sizeof(float) * COLS), *stdv = malloc(sizeof(float) * COLS);
    CHECK(pk_stats_l2_norm(stats, norm64, COLS));
    CHECK(pk_stats_std(stats, std64, COLS));
    for (int j = 0; j < COLS; j++) { norm[j] = (float)norm64[j]; stdv[j] = (float)std64[j]; }
    printf("calibration: %lld tokens streamed in %d batches (%.1f ms)\n", (long long)tokens, CALIBRATION / BATCH,
           1e3 * (now() - t0));
    activations(eval, EVALUATION, scale); /* disjoint evaluation tokens */

    struct { const char *name; int kind; const float *features; int scope; double sparsity; int n, m; } runs[] = {
        {"random", PK_CRITERION_RANDOM, NULL, PK_SCOPE_ROW, 0.5, 0, 0},
        {"magnitude", PK_CRITERION_MAGNITUDE, NULL, PK_SCOPE_ROW, 0.5, 0, 0},
        {"magnitude", PK_CRITERION_MAGNITUDE, NULL, PK_SCOPE_LAYER, 0.5, 0, 0},
        {"wanda", PK_CRITERION_WANDA, norm, PK_SCOPE_ROW, 0.5, 0, 0},
        {"stade", PK_CRITERION_STADE, stdv, PK_SCOPE_ROW, 0.5, 0, 0},
        {"magnitude", PK_CRITERION_MAGNITUDE, NULL, PK_SCOPE_NM, 0, 2, 4},
        {"wanda", PK_CRITERION_WANDA, norm, PK_SCOPE_NM, 0, 2, 4},
        {"wanda", PK_CRITERION_WANDA, norm, PK_SCOPE_ROW, 0.7, 0, 0},
    };
    printf("\n%-10s %-10s %9s %11s %10s\n", "criterion", "selection", "sparsity", "out. error", "mask ms");
    for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++) {
        pk_matrix weights = {w, ROWS, COLS, COLS, PK_DTYPE_FLOAT32, 0};
        pk_criterion criterion;
        pk_criterion_init(&criterion);
        criterion.kind = runs[i].kind;
        criterion.feature_values = runs[i].features;
        criterion.feature_count = COLS;
        criterion.seed = 1;
        pk_selection selection;
        pk_selection_init(&selection);
        selection.scope = runs[i].scope;
        selection.sparsity = runs[i].sparsity;
        selection.n = runs[i].n;
        selection.m = runs[i].m;
        double start = now();
        CHECK(pk_mask(&weights, &criterion, &selection, mask));
        double elapsed = now() - start;
        memcpy(pruned, w, sizeof(float) * ROWS * COLS);
        pk_matrix target = {pruned, ROWS, COLS, COLS, PK_DTYPE_FLOAT32, 0};
        CHECK(pk_apply_mask(&target, mask));
        double overall = 0;
        CHECK(pk_mask_sparsity(mask, ROWS, COLS, row_sparsity, &overall));
        char selection_name[16];
        if (runs[i].scope == PK_SCOPE_NM) snprintf(selection_name, sizeof selection_name, "%d:%d", runs[i].n, runs[i].m);
        else snprintf(selection_name, sizeof selection_name, "%s %.0f%%", runs[i].scope == PK_SCOPE_ROW ? "row" : "layer",
                      100 * runs[i].sparsity);
        printf("%-10s %-10s %8.1f%% %11.4f %10.2f\n", runs[i].name, selection_name, 100 * overall,
               output_error(w, pruned, eval), 1e3 * elapsed);
    }
    /* Second order: SparseGPT chooses the mask and updates the kept weights (OBS). */
    double *hessian = malloc(sizeof(double) * COLS * COLS);
    if (!hessian) return 1;
    CHECK(pk_stats_gram(stats, hessian, (int64_t)COLS * COLS));
    for (int nm = 0; nm < 2; nm++) {
        pk_matrix weights = {w, ROWS, COLS, COLS, PK_DTYPE_FLOAT32, 0};
        pk_matrix target = {pruned, ROWS, COLS, COLS, PK_DTYPE_FLOAT32, 0};
        pk_reconstruction_options options;
        pk_reconstruction_options_init(&options);
        if (nm) options.scope = PK_SCOPE_NM;
        double start = now();
        CHECK(pk_sparsegpt(&weights, hessian, COLS, &options, mask, &target));
        double elapsed = now() - start;
        double overall = 0;
        CHECK(pk_mask_sparsity(mask, ROWS, COLS, NULL, &overall));
        printf("%-10s %-10s %8.1f%% %11.4f %10.2f\n", "sparsegpt", nm ? "2:4" : "block 50%", 100 * overall,
               output_error(w, pruned, eval), 1e3 * elapsed);
    }
    free(hessian);
    printf("\nout. error = ||(W - W_pruned) X|| / ||W X|| on %d held-out tokens; activation-aware criteria\n"
           "(wanda, stade) keep the weights that meet large inputs; sparsegpt also updates the kept\n"
           "weights (second order). mask ms includes sparsegpt's weight update.\n", EVALUATION);
    pk_stats_free(stats);
    free(w); free(pruned); free(scale); free(x); free(eval); free(mask); free(row_sparsity);
    free(norm64); free(std64); free(norm); free(stdv);
    return 0;
}
