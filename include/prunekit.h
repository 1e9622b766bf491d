/*
 * prunekit.h - the stable C interface of PruneKit, a pruning engine for neural-network weights.
 *
 * This header is the contract. It is C99, includes only <stddef.h> and <stdint.h>, and is
 * usable from C++ unchanged. It is grouped by area, in the order data flows:
 *
 *   1. Version and status         6. Reconstruction (weight updates, low rank)
 *   2. Tensors and dtypes         7. Structures (channels, heads, blocks; inference-time gating)
 *   3. Scores and criteria        8. Export formats (2:4, CSR, bit mask)
 *   4. Selection and masks        9. Progressive pruning (schedules, pruners, host loops)
 *   5. Statistics
 *
 * Conventions that hold for every function below:
 *
 *  - Weights are 2-D row-major views (pk_matrix): rows = output features, cols = input
 *    features (PyTorch's Linear layout). A conv weight [out, in, kh, kw] is viewed as
 *    [out, in*kh*kw]. row_stride (in elements, >= cols) lets a view address a slice of a
 *    larger buffer without a copy.
 *  - Masks are uint8, rows*cols bytes, dense row-major (no stride): 1 = keep, 0 = pruned,
 *    so `w * mask` is the pruned weight (PyTorch's convention).
 *  - Scores are float32. The built-in criteria compute each score as one float32 operation
 *    on float32 inputs (e.g. Wanda: (float)|w| * feature_values[col]); an independent
 *    implementation in numpy reproduces them bit for bit.
 *  - Count: a comparison group of n entries at sparsity s prunes exactly
 *    k = floor(s * n) entries, with s * n evaluated in IEEE double (Python's int(n * s)).
 *  - Order: inside a group entries are ranked by (score, index) ascending and the first k
 *    are pruned. The index is the position inside the group: the column for PK_SCOPE_ROW,
 *    row * cols + col for PK_SCOPE_LAYER, and for PK_SCOPE_GLOBAL the layer's position in the
 *    list, then row * cols + col. -0.0 and +0.0 are the same score.
 *  - Results never depend on the number of threads.
 *  - Every check runs before anything is written: on any error, output buffers and
 *    in-place weights are left exactly as they were.
 *  - Non-finite weights, gradients, scores or statistics are an error (PK_ERROR_NON_FINITE),
 *    and the message names the first offending position.
 *  - Unless a comment says otherwise, the library keeps no pointer passed to a function after
 *    the function returns, and never returns memory that the caller must free, except
 *    through a documented _free function.
 *  - On failure a function returns a non-zero pk_status and pk_last_error() describes it.
 *    Functions are thread-safe: different threads may call them concurrently on different
 *    outputs. One pk_stats handle may be used from several threads; calls on it are serialized.
 *
 * Arguments and their documentation:
 *
 *  - Every argument of every function has a line: `@param name` for what the function only
 *    reads, `@param[out] name` for what it writes (written only on success), `@param[in,out]
 *    name` for memory it reads and updates in place (weights, a mask refined in place).
 *    Outputs are named *_out; "may be NULL" marks an optional output, skipped when NULL.
 *  - New functions take their arguments in this order: the tensors and handles read, the sizes
 *    that describe them, scalar parameters, the option struct (NULL only where said), host
 *    callbacks with their user_data, then the outputs, required before optional, each output
 *    array followed directly by its length or capacity in elements. The functions that predate
 *    this rule keep their argument order (the ABI is stable); their @param lines say which
 *    arguments are outputs.
 *  - Enum values are PK_ plus the enum's name without pk_ (and without a trailing _kind):
 *    enum pk_structure_mode has PK_STRUCTURE_MODE_*, enum pk_dtype PK_DTYPE_*. Status codes are
 *    the exception every C library makes: PK_OK and PK_ERROR_*. Earlier spellings stay in the
 *    enums as aliases with the same values (PK_SELECT_PER_GROUP == PK_STRUCTURE_MODE_PER_GROUP),
 *    so code written against an older header keeps compiling.
 */
#ifndef PRUNEKIT_H
#define PRUNEKIT_H

#include <stddef.h>
#include <stdint.h>

#ifndef PK_API
#  if defined(__GNUC__) || defined(__clang__)
#    define PK_API __attribute__((visibility("default")))
#  else
#    define PK_API
#  endif
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ========================================================================================== */
/* 1. Version and status                                                                      */
/* ========================================================================================== */

#define PK_VERSION_MAJOR 0
#define PK_VERSION_MINOR 1
#define PK_VERSION_PATCH 0
#define PK_VERSION_NUMBER (PK_VERSION_MAJOR * 10000 + PK_VERSION_MINOR * 100 + PK_VERSION_PATCH)
#define PK_VERSION_STRING "0.1.0"

/* The version of the library that is loaded, as PK_VERSION_NUMBER; compare it with the header
 * the host was compiled against. Takes no argument; never fails. */
PK_API int32_t pk_version_number(void);

/* The loaded library's version as "MAJOR.MINOR.PATCH". Static storage; never NULL. Takes no
 * argument. */
PK_API const char *pk_version_string(void);

/* Every fallible function returns a pk_status: PK_OK or one of the codes below. The values are
 * pinned; new codes are only ever appended. */
typedef int32_t pk_status;

enum pk_status_code {
    PK_OK = 0,
    PK_ERROR_NULL_POINTER = 1,       /* a required pointer argument was NULL */
    PK_ERROR_INVALID_ARGUMENT = 2,   /* a value out of range: sparsity, N:M, enum value, ... */
    PK_ERROR_INVALID_SHAPE = 3,      /* sizes that are zero, negative, too large or disagree */
    PK_ERROR_UNSUPPORTED_DTYPE = 4,  /* a dtype this function does not take */
    PK_ERROR_NON_FINITE = 5,         /* NaN or infinity in weights, gradients, scores or stats */
    PK_ERROR_STRUCT_SIZE = 6,        /* an option struct's struct_size is too small, or larger
                                        with non-zero fields this library does not know */
    PK_ERROR_OUT_OF_MEMORY = 7,      /* scratch memory could not be allocated */
    PK_ERROR_CORRUPT_DATA = 8,       /* serialized bytes are truncated, corrupted or foreign */
    PK_ERROR_BUFFER_TOO_SMALL = 9,   /* a caller buffer cannot hold the output */
    PK_ERROR_INTERNAL = 10,          /* a bug in PruneKit: please report it */
    PK_ERROR_NUMERIC = 11,           /* a Hessian that stays not positive definite after the
                                        dampening retries, or an update that overflowed */
    PK_ERROR_CANCELLED = 12          /* a host callback stopped a loop (non-zero return); the
                                        host's weights are as they were before the call */
};

/* A short static name for a status code ("PK_ERROR_NON_FINITE"), or "PK_UNKNOWN_STATUS".
 * @param status  any value. */
PK_API const char *pk_status_string(pk_status status);

/* The detail message of the last failed call on the calling thread, or "" if no call on this
 * thread has failed. The pointer stays valid until the next failed call on this thread or the
 * thread's exit. Successful calls leave it unchanged. Takes no argument. */
PK_API const char *pk_last_error(void);

/* ========================================================================================== */
/* 2. Tensors and dtypes                                                                      */
/* ========================================================================================== */

enum pk_dtype {
    PK_DTYPE_FLOAT32 = 0,
    PK_DTYPE_FLOAT64 = 1,
    PK_DTYPE_FLOAT16 = 2,   /* IEEE 754 binary16 */
    PK_DTYPE_BFLOAT16 = 3   /* the upper 16 bits of a float32 */
};

/* A 2-D row-major view of caller memory. Element (r, c) is at
 * (char *)data + (r * row_stride + c) * sizeof(element). Functions that only read a matrix
 * never write through data. This struct is frozen: it will not grow. */
typedef struct pk_matrix {
    void *data;
    int64_t rows;        /* > 0 */
    int64_t cols;        /* > 0 */
    int64_t row_stride;  /* elements, >= cols */
    int32_t dtype;       /* enum pk_dtype */
    int32_t reserved;    /* set to 0 */
} pk_matrix;

/* ========================================================================================== */
/* 3. Scores and criteria: how important each weight is                                       */
/* ========================================================================================== */

enum pk_criterion_kind {
    /* score = |w| */
    PK_CRITERION_MAGNITUDE = 0,
    /* score = a uniform draw in [0, 1) from a counter-based generator, so every language gets
     * the same draw: for the entry at p = row * cols + col,
     *   z = seed + (p + 1) * 0x9E3779B97F4A7C15            (mod 2^64)
     *   z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9;  z = (z ^ (z >> 27)) * 0x94D049BB133111EB;
     *   z = z ^ (z >> 31)                                    (SplitMix64's finaliser)
     *   score = (float)(z >> 40) * 2^-24
     * The weights are still checked for non-finite values. */
    PK_CRITERION_RANDOM = 1,
    /* score = |w| * feature_values[col]: Wanda, with feature_values the per-input-feature L2
     * norms of the calibration activations (pk_stats_l2_norm). */
    PK_CRITERION_WANDA = 2,
    /* score = |w| * feature_values[col]: STADE, with feature_values the per-input-feature
     * standard deviations (pk_stats_std). */
    PK_CRITERION_STADE = 3,
    /* score = |w * g|, g = gradient(row, col): first-order Taylor. */
    PK_CRITERION_TAYLOR = 4,
    /* score = the matrix entry itself (signed): the matrix passed as weights holds scores the
     * caller computed. Higher scores are kept. */
    PK_CRITERION_SCORES = 5
};

/* Option struct: set struct_size = sizeof(pk_criterion) (pk_criterion_init does), fill the
 * fields the kind needs. Grows only at the end. */
typedef struct pk_criterion {
    size_t struct_size;
    int32_t kind;                 /* enum pk_criterion_kind; default PK_CRITERION_MAGNITUDE */
    int32_t reserved;             /* set to 0 */
    const float *feature_values;  /* WANDA, STADE: finite, >= 0, one per column */
    int64_t feature_count;        /* WANDA, STADE: must equal the weights' cols */
    const pk_matrix *gradient;    /* TAYLOR: same rows and cols as the weights, any dtype */
    uint64_t seed;                /* RANDOM */
} pk_criterion;

/* Fills *criterion with defaults (magnitude) and sets struct_size.
 * @param[out] criterion  the struct to fill.
 * @retval PK_OK
 * @retval PK_ERROR_NULL_POINTER criterion is NULL */
PK_API pk_status pk_criterion_init(pk_criterion *criterion);

/* Computes the criterion's score of every weight.
 * Reads weights, the criterion and what it points to. Keeps nothing.
 * @param weights          the layer, any dtype.
 * @param criterion        the criterion (struct_size set).
 * @param[out] scores_out  rows*cols float32, dense row-major.
 * @retval PK_OK
 * @retval PK_ERROR_NULL_POINTER weights, criterion, scores_out or a pointer the kind needs
 * @retval PK_ERROR_INVALID_SHAPE bad sizes, a stride < cols, feature_count or gradient shape
 *         not matching the weights
 * @retval PK_ERROR_INVALID_ARGUMENT unknown criterion kind, negative feature value
 * @retval PK_ERROR_UNSUPPORTED_DTYPE unknown dtype
 * @retval PK_ERROR_STRUCT_SIZE criterion->struct_size
 * @retval PK_ERROR_NON_FINITE a non-finite weight, gradient, feature value or score */
PK_API pk_status pk_score(const pk_matrix *weights, const pk_criterion *criterion,
                          float *scores_out);

/* OWL's outlier ratio of one layer: the fraction of its scores under `criterion` (e.g. Wanda)
 * above threshold times their mean (OWL's M, e.g. 5). Keeps nothing.
 * @param weights         the layer, any dtype.
 * @param criterion       the entry scores (struct_size set).
 * @param threshold       OWL's M, positive and finite.
 * @param[out] ratio_out  receives the fraction in [0, 1].
 * @retval the codes of pk_score; PK_ERROR_INVALID_ARGUMENT threshold not positive and finite */
PK_API pk_status pk_outlier_ratio(const pk_matrix *weights, const pk_criterion *criterion, double threshold,
                                  double *ratio_out);

/* ========================================================================================== */
/* 4. Selection and masks: which weights go                                                   */
/* ========================================================================================== */

enum pk_scope {
    PK_SCOPE_ROW = 0,     /* each row (output) is a group: its inputs compete, as in Wanda */
    PK_SCOPE_LAYER = 1,   /* the whole matrix is one group */
    PK_SCOPE_GLOBAL = 2,  /* all layers passed to pk_mask_layers form one group; for a single
                             matrix the same as PK_SCOPE_LAYER */
    PK_SCOPE_NM = 3       /* N:M along the input dimension: in every run of m consecutive
                             columns, keep the n best and prune m - n */
};

/* Option struct: set struct_size = sizeof(pk_selection) (pk_selection_init does). */
typedef struct pk_selection {
    size_t struct_size;
    int32_t scope;         /* enum pk_scope; default PK_SCOPE_ROW */
    int32_t num_threads;   /* 0 = one per CPU (default); results never depend on it */
    double sparsity;       /* ROW, LAYER, GLOBAL: the fraction pruned, in [0, 1]; default 0.5 */
    int32_t n;             /* NM: kept per group, 0 < n < m; default 2 */
    int32_t m;             /* NM: group length, must divide cols; default 4 */
} pk_selection;

/* Fills *selection with defaults (per row, 50%, 2:4 for PK_SCOPE_NM) and sets struct_size.
 * @param[out] selection  the struct to fill.
 * @retval PK_OK
 * @retval PK_ERROR_NULL_POINTER selection is NULL */
PK_API pk_status pk_selection_init(pk_selection *selection);

/* Computes a pruning mask of one matrix: scores by the criterion, selects by the selection.
 * Keeps nothing.
 * @param weights        the layer, any dtype.
 * @param criterion      the entry scores (struct_size set).
 * @param selection      scope, sparsity or N:M, threads (struct_size set).
 * @param[out] mask_out  rows*cols bytes, 1 = keep.
 * @retval PK_OK
 * @retval the codes of pk_score, and
 * @retval PK_ERROR_INVALID_ARGUMENT sparsity outside [0, 1] or NaN, unknown scope,
 *         n <= 0, n >= m, num_threads < 0
 * @retval PK_ERROR_INVALID_SHAPE m does not divide cols (PK_SCOPE_NM)
 * @retval PK_ERROR_OUT_OF_MEMORY */
PK_API pk_status pk_mask(const pk_matrix *weights, const pk_criterion *criterion,
                         const pk_selection *selection, uint8_t *mask_out);

/* Masks for several layers at once. With PK_SCOPE_GLOBAL all layers form one comparison group
 * (indexed by layer position in the arrays, then row * cols + col); with any other scope each
 * layer is handled as pk_mask would. Nothing is written unless every layer is valid. Keeps
 * nothing.
 * @param weights         layer_count matrices.
 * @param criteria        layer_count pointers to criteria.
 * @param layer_count     the number of layers, > 0.
 * @param selection       the selection, shared by every layer.
 * @param[out] masks_out  layer_count pointers; masks_out[i] receives rows_i*cols_i bytes.
 * @retval the codes of pk_mask; PK_ERROR_INVALID_SHAPE for layer_count <= 0.
 *         Messages name the offending layer. */
PK_API pk_status pk_mask_layers(const pk_matrix *weights, const pk_criterion *const *criteria,
                                int64_t layer_count, const pk_selection *selection,
                                uint8_t *const *masks_out);

/* Sets every weight whose mask byte is 0 to +0.0, in place, in the weights' own dtype.
 * Keeps nothing.
 * @param[in,out] weights  the layer; its data is written.
 * @param mask             rows*cols bytes, each 0 or 1.
 * @retval PK_OK
 * @retval PK_ERROR_NULL_POINTER, PK_ERROR_INVALID_SHAPE, PK_ERROR_UNSUPPORTED_DTYPE
 * @retval PK_ERROR_INVALID_ARGUMENT a mask byte other than 0 or 1 */
PK_API pk_status pk_apply_mask(const pk_matrix *weights, const uint8_t *mask);

/* The achieved sparsity (fraction of zeros) of a mask, per row and overall. Keeps nothing.
 * @param mask                   rows*cols bytes, each 0 or 1.
 * @param rows                   > 0.
 * @param cols                   > 0.
 * @param[out] row_sparsity_out  rows doubles; may be NULL.
 * @param[out] overall_out       the overall fraction; may be NULL.
 * @retval PK_OK
 * @retval PK_ERROR_NULL_POINTER, PK_ERROR_INVALID_SHAPE
 * @retval PK_ERROR_INVALID_ARGUMENT a mask byte other than 0 or 1 */
PK_API pk_status pk_mask_sparsity(const uint8_t *mask, int64_t rows, int64_t cols,
                                  double *row_sparsity_out, double *overall_out);

/* Layer-wise sparsity allocation (OWL, Yin et al. 2024; sensitivity allocation, SBPF): per-layer
 * sparsities whose pruned counts add up to exactly floor(sparsity * sum of sizes), layers of higher
 * importance (OWL: pk_outlier_ratio of their Wanda scores; SBPF: their error at a probe sparsity)
 * pruned less. Importance is scaled into [0, 2 spread], the sparsities are a shift minus it with the
 * weighted mean at the target, each within [sparsity - spread, sparsity + spread] and [0, 1] (to
 * one weight), and whole counts are handed out by largest remainder (ties by layer index).
 * @param sizes                layers entries: each layer's number of weights, > 0.
 * @param importance           layers entries, finite.
 * @param layers               the number of layers, > 0.
 * @param sparsity             the overall target, in [0, 1].
 * @param spread               the largest deviation from the target, in [0, 1].
 * @param[out] pruned_out      layers counts; may be NULL.
 * @param[out] sparsities_out  layers sparsities, (count + 0.5) / size, so that a per-layer
 *                             call's floor(s * n) gives the count back exactly; 1 for a fully
 *                             pruned layer; may be NULL.
 * @retval PK_OK, PK_ERROR_NULL_POINTER
 * @retval PK_ERROR_INVALID_SHAPE layers <= 0, a size <= 0, sizes adding up past int64
 * @retval PK_ERROR_INVALID_ARGUMENT sparsity or spread outside [0, 1]; a target the bounds cannot meet
 * @retval PK_ERROR_NON_FINITE a non-finite importance */
PK_API pk_status pk_allocate_sparsity(const int64_t *sizes, const double *importance, int64_t layers, double sparsity,
                                      double spread, int64_t *pruned_out, double *sparsities_out);

/* Channel permutations for N:M (Pool and Yu 2021, NVIDIA ASP; RIA 2024): a permutation of a
 * layer's input columns under which the N:M mask of the criterion's scores keeps more importance
 * (the sum over rows and groups of the n largest scores). Greedy channel swaps between groups of m
 * columns: a table holds every pair of groups' best exchange of one column each and its exact
 * gain; each pass makes the gaining swaps largest first (ties by group indices), skipping pairs
 * that share a group with a swap made earlier in the pass, and recomputes the touched groups'
 * entries; it stops when no swap gains, after max_swaps swaps, or at the time limit. It starts
 * from the identity and takes only gaining swaps, so the permuted mask keeps at least what the
 * unpermuted one keeps. The permuted layer is W[:, permutation]; the producing layer's output
 * rows (and bias) must be permuted the same way (pk_permute_group), and so must the layer's
 * calibration statistics (feature norms, X^T X) before it is pruned. */
typedef struct pk_permutation_options {
    size_t struct_size;
    int32_t n;              /* kept per group; default 2 */
    int32_t m;              /* group length, 2 ... 64, must divide cols; default 4 */
    int64_t segment;        /* 0 = any column may move anywhere (default); else columns move
                               only inside consecutive runs of segment columns (a multiple of m
                               dividing cols), e.g. within an attention head */
    int64_t max_swaps;      /* the budget: at most this many swaps, in [1, 2^40]; 0 is an error;
                               default 2^20 (with segments: split evenly among them) */
    double time_limit;      /* seconds, >= 0; 0 = none (default). A limit makes the result depend
                               on the machine's speed; without one it is deterministic */
    int32_t num_threads;    /* 0 = one per CPU; results do not depend on it */
    int32_t reserved;       /* set to 0 */
} pk_permutation_options;

/* Fills *options with the defaults above and sets struct_size.
 * @param[out] options  the struct to fill.
 * @retval PK_OK, PK_ERROR_NULL_POINTER */
PK_API pk_status pk_permutation_options_init(pk_permutation_options *options);

/* Searches the permutation. Writes its outputs only on success. Keeps nothing.
 * @param weights               the consumer layer, rows = outputs, any dtype.
 * @param criterion             the entry scores (magnitude, Wanda, ...; NULL = magnitude).
 * @param options               NULL for the defaults.
 * @param[out] permutation_out  cols int64 entries: permutation_out[j] = the original column
 *                              placed at position j.
 * @param[out] kept_before_out  the importance the N:M mask keeps without the permutation
 *                              (a float64 sum of the float32 scores); may be NULL.
 * @param[out] kept_after_out   the importance it keeps with it; may be NULL.
 * @retval PK_OK
 * @retval the codes of pk_score, and
 * @retval PK_ERROR_INVALID_SHAPE m not dividing cols, a segment that is not a multiple of m or
 *         does not divide cols
 * @retval PK_ERROR_INVALID_ARGUMENT n <= 0, n >= m, m > 64, max_swaps outside [1, 2^40], a
 *         negative or non-finite time limit, num_threads < 0
 * @retval PK_ERROR_STRUCT_SIZE, PK_ERROR_OUT_OF_MEMORY */
PK_API pk_status pk_channel_permutation(const pk_matrix *weights, const pk_criterion *criterion,
                                        const pk_permutation_options *options, int64_t *permutation_out,
                                        double *kept_before_out, double *kept_after_out);

/* ========================================================================================== */
/* 5. Statistics: calibration activations, streamed                                           */
/* ========================================================================================== */

/* An accumulator of per-feature activation statistics: token count, mean and M2 (Chan's
 * parallel update, so merging is exact up to round-off), and sum of squares, all in float64.
 * Calibration data is streamed through it in batches; it never holds the batches. */
typedef struct pk_stats pk_stats;

/* Creates an empty accumulator for `features` input features.
 * @param features        the number of features, > 0.
 * @param[out] stats_out  receives a new handle, to be released with pk_stats_free.
 * @retval PK_OK
 * @retval PK_ERROR_NULL_POINTER stats_out is NULL
 * @retval PK_ERROR_INVALID_SHAPE features <= 0 or too large
 * @retval PK_ERROR_OUT_OF_MEMORY */
PK_API pk_status pk_stats_create(int64_t features, pk_stats **stats_out);

/* Creates an empty accumulator that also keeps the Gram matrix X^T X of its inputs (the layer
 * Hessian up to scale, for pk_sparsegpt), accumulated in float64 with OpenBLAS dsyrk, merged by
 * pk_stats_merge (both sides must keep one) and serialized with the rest (flag bit 0).
 * @param features        the number of features, 1 ... 32768.
 * @param[out] stats_out  receives a new handle, to be released with pk_stats_free.
 * @retval PK_OK, PK_ERROR_NULL_POINTER
 * @retval PK_ERROR_INVALID_SHAPE features <= 0 or > 32768
 * @retval PK_ERROR_OUT_OF_MEMORY */
PK_API pk_status pk_stats_create_gram(int64_t features, pk_stats **stats_out);

/* Releases an accumulator. pk_stats_free(NULL) is a no-op, and so is a handle that is not live.
 * Handles are an index into the library's table plus a generation, not addresses: once freed, a
 * handle stays invalid for the life of the process (even when the next pk_stats_create reuses
 * the memory), and every function given a freed, forged or foreign handle returns
 * PK_ERROR_INVALID_ARGUMENT ("not a live handle") without touching any accumulator.
 * @param stats  the handle, or NULL. */
PK_API void pk_stats_free(pk_stats *stats);

/* Adds a batch of activations [tokens, features] (any number of tokens; any dtype). Reads the
 * batch, keeps nothing. On error the accumulator is unchanged.
 * @param[in,out] stats  a live handle.
 * @param batch          tokens x features; cols must equal the accumulator's features.
 * @retval PK_OK
 * @retval PK_ERROR_NULL_POINTER, PK_ERROR_INVALID_SHAPE, PK_ERROR_UNSUPPORTED_DTYPE
 * @retval PK_ERROR_INVALID_ARGUMENT stats is not a live handle
 * @retval PK_ERROR_NON_FINITE a non-finite activation (message gives token and feature)
 * @retval PK_ERROR_NUMERIC the token count would pass 2^53, or a feature's sum of squares 2^1000
 *         (about 1.07e301; e.g. float64 activations of 1e200, whose squares overflow): refused
 *         before anything changes, so the accumulator stays serializable */
PK_API pk_status pk_stats_update(pk_stats *stats, const pk_matrix *batch);

/* Adds rows rows[0..count) of a batch, in that order (rows may repeat): the same bytes as
 * pk_stats_update on a matrix holding just those rows, without making it (e.g. the real tokens
 * of a padded batch). count 0 adds nothing. On error the accumulator is unchanged.
 * @param[in,out] stats  a live handle.
 * @param batch          activations [batch rows, features]; cols must equal the accumulator's features.
 * @param rows           row numbers into batch, each in [0, batch->rows); may be NULL when count is 0.
 * @param count          the number of row numbers.
 * @retval PK_OK
 * @retval PK_ERROR_NULL_POINTER, PK_ERROR_INVALID_SHAPE, PK_ERROR_UNSUPPORTED_DTYPE
 * @retval PK_ERROR_INVALID_ARGUMENT stats is not a live handle, count < 0, or an index outside
 *         the batch (the message gives its position)
 * @retval PK_ERROR_NON_FINITE, PK_ERROR_NUMERIC as pk_stats_update */
PK_API pk_status pk_stats_update_rows(pk_stats *stats, const pk_matrix *batch, const int64_t *rows, int64_t count);

/* Merges `other` into `into`, as if into had also seen every batch other saw. other is not
 * changed; into may equal other.
 * @param[in,out] into  a live handle, receives the merge.
 * @param other         a live handle with the same number of features.
 * @retval PK_OK
 * @retval PK_ERROR_NULL_POINTER, PK_ERROR_INVALID_ARGUMENT (not a live handle)
 * @retval PK_ERROR_INVALID_SHAPE the feature counts differ
 * @retval PK_ERROR_NUMERIC the merged count would pass 2^53 or a sum of squares 2^1000 (into is
 *         unchanged) */
PK_API pk_status pk_stats_merge(pk_stats *into, const pk_stats *other);

/* The number of features (pk_stats_features), and the number of tokens seen so far
 * (pk_stats_count).
 * @param stats              a live handle.
 * @param[out] features_out  receives the number of features.
 * @param[out] count_out     receives the number of tokens.
 * @retval PK_OK, PK_ERROR_NULL_POINTER, PK_ERROR_INVALID_ARGUMENT (not a live handle) */
PK_API pk_status pk_stats_features(const pk_stats *stats, int64_t *features_out);
PK_API pk_status pk_stats_count(const pk_stats *stats, int64_t *count_out);

/* Per-feature results, one double per feature:
 *   pk_stats_l2_norm        sqrt(sum over tokens of x^2)         (Wanda's feature norm)
 *   pk_stats_mean           mean over tokens
 *   pk_stats_variance       population variance, M2 / count
 *   pk_stats_std            population standard deviation        (STADE)
 *   pk_stats_mean_abs       mean |x| over tokens                 (channel activity)
 *   pk_stats_zero_fraction  the fraction of tokens that are exactly zero (APoZ after a ReLU)
 * pk_stats_l2_norm of an empty accumulator is all zeros; the others need count > 0.
 * Accumulators keep what pk_stats_mean_abs and pk_stats_zero_fraction need since 0.1; one
 * restored from bytes without it (or merged with such) reports PK_ERROR_INVALID_ARGUMENT there.
 * @param stats     a live handle.
 * @param[out] out  length doubles.
 * @param length    must equal the number of features.
 * @retval PK_OK
 * @retval PK_ERROR_NULL_POINTER, PK_ERROR_INVALID_ARGUMENT (not a live handle, or empty)
 * @retval PK_ERROR_INVALID_SHAPE length differs from the feature count */
PK_API pk_status pk_stats_l2_norm(const pk_stats *stats, double *out, int64_t length);
PK_API pk_status pk_stats_mean(const pk_stats *stats, double *out, int64_t length);
PK_API pk_status pk_stats_variance(const pk_stats *stats, double *out, int64_t length);
PK_API pk_status pk_stats_std(const pk_stats *stats, double *out, int64_t length);
PK_API pk_status pk_stats_mean_abs(const pk_stats *stats, double *out, int64_t length);
PK_API pk_status pk_stats_zero_fraction(const pk_stats *stats, double *out, int64_t length);

/* X^T X (pk_stats_gram), or the centred Gram matrix sum over tokens of (x - mean)(x - mean)^T
 * = X^T X - count mean mean^T, whose diagonal is the exact M2 (pk_stats_centered_gram):
 * features x features, row-major, symmetric.
 * @param stats     a live handle that keeps a Gram matrix (pk_stats_create_gram).
 * @param[out] out  length doubles.
 * @param length    must equal features * features.
 * @retval PK_OK, PK_ERROR_NULL_POINTER
 * @retval PK_ERROR_INVALID_ARGUMENT not a live handle, or the accumulator keeps no Gram matrix;
 *         for pk_stats_centered_gram also an empty accumulator
 * @retval PK_ERROR_INVALID_SHAPE length differs from features * features */
PK_API pk_status pk_stats_gram(const pk_stats *stats, double *out, int64_t length);
PK_API pk_status pk_stats_centered_gram(const pk_stats *stats, double *out, int64_t length);

/* The exact number of bytes pk_stats_serialize writes for this accumulator now.
 * @param stats          a live handle.
 * @param[out] size_out  receives the size in bytes.
 * @retval PK_OK, PK_ERROR_NULL_POINTER, PK_ERROR_INVALID_ARGUMENT (not a live handle) */
PK_API pk_status pk_stats_serialized_size(const pk_stats *stats, size_t *size_out);

/* Serializes the accumulator in the versioned PruneKit statistics format (little-endian,
 * checksummed; described in docs/stats-format.md). Nothing is written if capacity is too small.
 * @param stats             a live handle.
 * @param[out] buffer       capacity bytes to write the state to.
 * @param capacity          the size of buffer, >= pk_stats_serialized_size.
 * @param[out] written_out  receives the bytes written.
 * @retval PK_OK
 * @retval PK_ERROR_NULL_POINTER, PK_ERROR_INVALID_ARGUMENT (not a live handle)
 * @retval PK_ERROR_BUFFER_TOO_SMALL capacity < pk_stats_serialized_size */
PK_API pk_status pk_stats_serialize(const pk_stats *stats, void *buffer, size_t capacity,
                                    size_t *written_out);

/* Restores an accumulator from bytes written by pk_stats_serialize (any library version that
 * wrote a format version this one reads).
 * @param buffer          the bytes, read and not kept.
 * @param size            their number.
 * @param[out] stats_out  receives a new handle, to be released with pk_stats_free.
 * @retval PK_OK
 * @retval PK_ERROR_NULL_POINTER
 * @retval PK_ERROR_CORRUPT_DATA truncated, corrupted (checksum), foreign or unknown-version
 *         bytes, or contents no accumulator can hold even with a valid checksum (a count above
 *         2^53, M2 above the sum of squares, a Gram matrix that is not symmetric or not
 *         consistent with the sums of squares, ...: docs/stats-format.md lists the checks); the
 *         message says which
 * @retval PK_ERROR_OUT_OF_MEMORY */
PK_API pk_status pk_stats_deserialize(const void *buffer, size_t size, pk_stats **stats_out);

/* ========================================================================================== */
/* 6. Reconstruction: pruning that also updates the kept weights; low rank                    */
/* ========================================================================================== */

/* The Hessian these functions take is any positive multiple of X^T X over the layer's
 * calibration inputs: cols x cols, row-major float64, symmetric (to 1e-6 relative), finite,
 * non-negative diagonal. Results do not depend on the scale: the Hessian is first multiplied by
 * the power of 2 that brings its largest diagonal entry into [1, 2) (exact), so H and 2^k H give
 * the same bits, and any other positive multiple the same up to round-off, at any magnitude
 * (float32 arithmetic included; a float64 Hessian in the subnormal range keeps the precision it
 * has). Inputs that never fire (zero diagonal) lose their weights, as in SparseGPT, and their
 * diagonal becomes the mean of the other diagonal entries (SparseGPT sets 1, which is not
 * scale-free; the two agree when that mean is 1), so they do not change the dampening.
 *
 * Indefinite matrices are not refused. The dampening retries exist because round-off (and the
 * float32 copy) can leave a Gram matrix barely not positive definite, and PruneKit cannot tell
 * that from a matrix that is not a Gram matrix at all: a symmetric matrix with a non-negative
 * diagonal but a negative eigenvalue -e is factored, and the call succeeds, once the dampening
 * has grown past e (each retry multiplies it by 10), so the result is that of H + d I with the d
 * that first worked. Set max_dampening_retries = 0 to refuse (PK_ERROR_NUMERIC) any matrix the
 * first dampening does not make positive definite.
 *
 * What is bit-identical: masks and weights for the same inputs, options and OpenBLAS build, across
 * callers (C, Python, Swift) and across num_threads (the per-row work is split by rows only).
 * OpenBLAS's own thread count may change the last bits of its GEMM and factorisations; the tests
 * check masks exactly and weights to a tight tolerance across OPENBLAS_NUM_THREADS.
 *
 * In every function of this section: weights is the layer (any dtype), hessian its cols x cols
 * Hessian as above, hessian_size its cols, and weights_out receives the updated weights (same
 * rows and cols, any dtype, any stride; it may be the weights' own memory for in-place work). */

enum pk_precision {
    PK_PRECISION_FLOAT32 = 0,
    PK_PRECISION_FLOAT64 = 1
};

/* Option struct: set struct_size = sizeof(pk_reconstruction_options)
 * (pk_reconstruction_options_init does). */
typedef struct pk_reconstruction_options {
    size_t struct_size;
    int32_t scope;                  /* pk_sparsegpt: PK_SCOPE_LAYER (default) = unstructured, exactly
                                       floor(sparsity * rows * B) pruned in every block of B columns
                                       (ties by row-major position in the block); PK_SCOPE_NM = keep
                                       n of every m columns per row, chosen as the group is reached */
    int32_t precision;              /* enum pk_precision of all arithmetic; default FLOAT32 */
    double sparsity;                /* default 0.5 */
    int32_t n;                      /* default 2 */
    int32_t m;                      /* default 4; must divide cols and block_size */
    int64_t block_size;             /* columns per block, default 128 */
    double dampening;               /* fraction of the mean Hessian diagonal added to it, 0.01 */
    int32_t max_dampening_retries;  /* not positive definite: retry with 10x the dampening at most
                                       this many times (default 4), then PK_ERROR_NUMERIC */
    int32_t num_threads;            /* 0 = one per CPU; results do not depend on it */
} pk_reconstruction_options;

/* Fills *options with the defaults above and sets struct_size.
 * @param[out] options  the struct to fill.
 * @retval PK_OK, PK_ERROR_NULL_POINTER */
PK_API pk_status pk_reconstruction_options_init(pk_reconstruction_options *options);

/* SparseGPT (OBS with lazy column-block updates) on one layer: chooses the mask block by block
 * from w^2 / [U]_cc^2 (U the upper Cholesky factor of the dampened inverse Hessian) and updates the
 * kept weights to make up for the pruned ones. Writes only on success. Keeps nothing.
 * @param weights          the layer, read.
 * @param hessian          hessian_size x hessian_size doubles.
 * @param hessian_size     must equal cols.
 * @param options          pattern, block size, dampening, precision, threads (struct_size set).
 * @param[out] mask_out    rows*cols bytes, 1 = keep.
 * @param[out] weights_out the updated weights.
 * @retval PK_OK
 * @retval PK_ERROR_NULL_POINTER, PK_ERROR_UNSUPPORTED_DTYPE, PK_ERROR_STRUCT_SIZE
 * @retval PK_ERROR_INVALID_SHAPE hessian_size != cols, weights_out of another shape, m not dividing
 *         cols or block_size
 * @retval PK_ERROR_INVALID_ARGUMENT sparsity, N:M, block size, dampening, scope or precision out of
 *         range; a non-symmetric hessian or a negative diagonal
 * @retval PK_ERROR_NON_FINITE a non-finite weight or hessian entry
 * @retval PK_ERROR_NUMERIC not positive definite after the dampening retries, or an updated weight
 *         that is not finite or does not fit weights_out's dtype (float16 above 65504 in magnitude,
 *         bfloat16 or float32 above about 3.4e38); nothing is written
 * @retval PK_ERROR_OUT_OF_MEMORY */
PK_API pk_status pk_sparsegpt(const pk_matrix *weights, const double *hessian, int64_t hessian_size,
                              const pk_reconstruction_options *options, uint8_t *mask_out,
                              const pk_matrix *weights_out);

/* The same OBS update under a given mask (e.g. from pk_mask with any criterion): the pruned
 * weights become 0 and the kept ones are updated. Writes weights_out only on success.
 * @param weights          the layer, read.
 * @param hessian          hessian_size x hessian_size doubles.
 * @param hessian_size     must equal cols.
 * @param mask             rows*cols bytes, 1 = keep, each 0 or 1.
 * @param options          block size, dampening, precision, threads; scope, sparsity, n and m
 *                         are ignored.
 * @param[out] weights_out the updated weights.
 * @retval the codes of pk_sparsegpt; PK_ERROR_INVALID_ARGUMENT for a mask byte other than 0 or 1 */
PK_API pk_status pk_reconstruct(const pk_matrix *weights, const double *hessian, int64_t hessian_size,
                                const uint8_t *mask, const pk_reconstruction_options *options,
                                const pk_matrix *weights_out);

/* Prunes whole input columns and compensates with the kept ones in closed form:
 * W'_K = W_K + W_P H_PK H_KK^-1 (least squares on the Hessian, dampened as above), W'_P = 0.
 * Writes weights_out only on success.
 * @param weights          the layer, read.
 * @param hessian          hessian_size x hessian_size doubles.
 * @param hessian_size     must equal cols.
 * @param keep_columns     cols bytes, 1 = keep, 0 = prune the column.
 * @param options          dampening, precision, threads.
 * @param[out] weights_out the updated weights.
 * @retval the codes of pk_sparsegpt; PK_ERROR_INVALID_ARGUMENT for a keep byte other than 0 or 1 */
PK_API pk_status pk_prune_columns(const pk_matrix *weights, const double *hessian, int64_t hessian_size,
                                  const uint8_t *keep_columns, const pk_reconstruction_options *options,
                                  const pk_matrix *weights_out);

/* ADMM pruning with weight updates (Boza 2024, "Fast and Optimal Weight Update for Pruned Large
 * Language Models"; ALPS): minimises ||(W - W') X||^2 subject to the pattern by alternating a
 * least-squares step W = (XY + rho (Z - U)) (Hn + rho I)^-1 with a projection Z of W + U onto the
 * pattern, the mask re-chosen during a cubic sparsity ramp and then frozen, then conjugate-gradient
 * steps for the kept weights on the frozen support. It works on the normalised problem (Hn = D^-1
 * H D^-1 with D = sqrt(diag H), Wn = W D), so the projection ranks |Wn + U| (Wanda's |w| ||x|| at
 * the start) and the result does not depend on the Hessian's scale. Costs one rows x cols x cols
 * GEMM per iteration and per refinement step, plus a Cholesky and inverse per value of rho. */
typedef struct pk_admm_options {
    size_t struct_size;
    int32_t scope;              /* PK_SCOPE_LAYER (default): exactly floor(sparsity * rows * cols)
                                   pruned, ties by row-major position; PK_SCOPE_ROW: floor(sparsity *
                                   cols) per row; PK_SCOPE_NM: n of every m consecutive inputs kept per
                                   row (during the ramp the entries N:M keeps are protected and the
                                   rest compete per layer, as in the reference code) */
    int32_t precision;          /* enum pk_precision of all arithmetic; default FLOAT32 */
    double sparsity;            /* default 0.5 */
    int32_t n;                  /* default 2 */
    int32_t m;                  /* default 4; must divide cols */
    int32_t iterations;         /* ADMM iterations, default 30, in [0, 100000] */
    int32_t ramp_iterations;    /* the first ramp_iterations choose the mask at the sparsity
                                   s - s (1 - (t + 1) / ramp)^3 of iteration t; then it is frozen.
                                   Default 20, in [0, iterations]; 0 = chosen once from the weights */
    double rho;                 /* penalty on the unit-diagonal Hessian, default 1, in (0, 1e12] */
    double rho_growth;          /* rho *= rho_growth after every rho_interval iterations; default 1 */
    int32_t rho_interval;       /* default 1, positive */
    int32_t refine_iterations;  /* conjugate-gradient steps on the frozen support, default 10 */
    double dampening;           /* added to the normalised Hessian's unit diagonal, default 0.1 */
    int32_t num_threads;        /* 0 = one per CPU; results do not depend on it */
} pk_admm_options;

/* Fills *options with the defaults above and sets struct_size.
 * @param[out] options  the struct to fill.
 * @retval PK_OK, PK_ERROR_NULL_POINTER */
PK_API pk_status pk_admm_options_init(pk_admm_options *options);

/* ADMM on one layer. Writes mask_out and weights_out only on success. Keeps nothing.
 * @param weights          the layer, read.
 * @param hessian          hessian_size x hessian_size doubles.
 * @param hessian_size     must equal cols.
 * @param mask             NULL to choose the mask, or a given mask (rows*cols bytes, 1 = keep;
 *                         scope, sparsity, n, m and the ramp are then ignored) whose kept
 *                         weights ADMM updates.
 * @param options          pattern, iterations, rho, dampening, threads (struct_size set).
 * @param[out] mask_out    rows*cols bytes, 1 = keep: the mask chosen; may be NULL.
 * @param[out] weights_out the updated weights.
 * @retval PK_OK
 * @retval PK_ERROR_NULL_POINTER, PK_ERROR_UNSUPPORTED_DTYPE, PK_ERROR_STRUCT_SIZE
 * @retval PK_ERROR_INVALID_SHAPE hessian_size != cols, weights_out of another shape, m not dividing cols
 * @retval PK_ERROR_INVALID_ARGUMENT an option out of range (the message names it), a mask byte
 *         other than 0 or 1, a non-symmetric hessian or a negative diagonal
 * @retval PK_ERROR_NON_FINITE a non-finite weight or hessian entry
 * @retval PK_ERROR_NUMERIC the normalised hessian plus rho is not positive definite, or an updated
 *         weight is not finite or overflows the dtype of weights_out
 * @retval PK_ERROR_OUT_OF_MEMORY */
PK_API pk_status pk_admm(const pk_matrix *weights, const double *hessian, int64_t hessian_size, const uint8_t *mask,
                         const pk_admm_options *options, uint8_t *mask_out, const pk_matrix *weights_out);

/* Mask refinement by swaps (SparseSwaps; DSnoT): a kept and a pruned entry of one row trade places
 * when that lowers the row's exact output error with the weights left as they are,
 * e = d H d^T with d = the row's pruned weights. Per-row counts are kept (PK_SCOPE_NM: trades stay
 * inside each group, so an n:m mask stays n:m). Weights are not changed. Each step evaluates the
 * exact change for the `candidates` cheapest kept and the `candidates` best pruned entries of the
 * row (for N:M, every pair of every group) and makes the best swap if it lowers the error. */
typedef struct pk_swap_options {
    size_t struct_size;
    int32_t scope;          /* PK_SCOPE_ROW (default) or PK_SCOPE_NM */
    int32_t n;              /* default 2 */
    int32_t m;              /* default 4; must divide cols */
    int32_t max_swaps;      /* per row, default 100, in [0, 2^30] */
    int32_t candidates;     /* per side and step, default 8, in [1, 1024] */
    int32_t num_threads;    /* 0 = one per CPU; results do not depend on it */
} pk_swap_options;

/* Fills *options with the defaults above and sets struct_size.
 * @param[out] options  the struct to fill.
 * @retval PK_OK, PK_ERROR_NULL_POINTER */
PK_API pk_status pk_swap_options_init(pk_swap_options *options);

/* Refines a mask in place. Writes the mask and *swaps_out only on success. Keeps nothing.
 * @param weights        the layer, read (not changed).
 * @param hessian        hessian_size x hessian_size doubles.
 * @param hessian_size   must equal cols.
 * @param options        scope, N:M, swap budget, candidates, threads (struct_size set).
 * @param[in,out] mask   rows*cols bytes, 1 = keep (e.g. from pk_mask), refined in place.
 * @param[out] swaps_out the total number of swaps made; may be NULL.
 * @retval PK_OK
 * @retval PK_ERROR_NULL_POINTER, PK_ERROR_UNSUPPORTED_DTYPE, PK_ERROR_STRUCT_SIZE
 * @retval PK_ERROR_INVALID_SHAPE hessian_size != cols, m not dividing cols
 * @retval PK_ERROR_INVALID_ARGUMENT an option out of range, a mask byte other than 0 or 1, a mask
 *         that is not n:m for PK_SCOPE_NM, a non-symmetric hessian or a negative diagonal
 * @retval PK_ERROR_NON_FINITE a non-finite weight or hessian entry
 * @retval PK_ERROR_OUT_OF_MEMORY */
PK_API pk_status pk_refine_mask(const pk_matrix *weights, const double *hessian, int64_t hessian_size,
                                const pk_swap_options *options, uint8_t *mask, int64_t *swaps_out);

/* Bias compensation, after any method: the bias absorbs the mean output shift of pruning,
 * b[r] += sum_j (original[r][j] - pruned[r][j]) mean[j]. With a weight update, reconstruct on the
 * centred Gram matrix (pk_stats_centered_gram) first: it minimises the part of the error the bias
 * cannot absorb. Updates the bias only on success.
 * @param original       the layer before pruning, any dtype.
 * @param pruned         the layer after pruning, the same shape.
 * @param mean           features doubles: the layer inputs' mean (e.g. pk_stats_mean).
 * @param features       must equal cols.
 * @param[in,out] bias   a 1 x rows pk_matrix of any dtype, updated in place.
 * @retval PK_OK, PK_ERROR_NULL_POINTER, PK_ERROR_UNSUPPORTED_DTYPE
 * @retval PK_ERROR_INVALID_SHAPE shapes that disagree
 * @retval PK_ERROR_NON_FINITE a non-finite weight, mean or bias entry
 * @retval PK_ERROR_NUMERIC the updated bias overflows its dtype */
PK_API pk_status pk_compensate_bias(const pk_matrix *original, const pk_matrix *pruned, const double *mean,
                                    int64_t features, const pk_matrix *bias);

/* A layer's output error on its calibration inputs from the Gram matrix alone:
 * error = sum_r d_r H d_r^T with d = original - pruned (= ||(W - W') X^T||^2 for H = X^T X),
 * relative = that over ||W X^T||^2 (0 when the latter is 0). What SparseGPT and ADMM minimise;
 * a sensitivity allocation (pk_allocate_sparsity) ranks layers by it at a probe sparsity.
 * Outputs are written only on success.
 * @param original           the layer before pruning, any dtype.
 * @param pruned             the layer after pruning, the same shape.
 * @param hessian            hessian_size x hessian_size doubles.
 * @param hessian_size       must equal cols.
 * @param[out] error_out     the error; may be NULL.
 * @param[out] relative_out  the relative error; may be NULL.
 * @retval PK_OK, PK_ERROR_NULL_POINTER, PK_ERROR_UNSUPPORTED_DTYPE, PK_ERROR_OUT_OF_MEMORY
 * @retval PK_ERROR_INVALID_SHAPE shapes that disagree; PK_ERROR_INVALID_ARGUMENT a non-symmetric hessian
 * @retval PK_ERROR_NON_FINITE a non-finite weight or hessian entry */
PK_API pk_status pk_output_error(const pk_matrix *original, const pk_matrix *pruned, const double *hessian,
                                 int64_t hessian_size, double *error_out, double *relative_out);

/* Option struct: set struct_size = sizeof(pk_low_rank_options) (pk_low_rank_options_init does).
 * Exactly one of rank and energy is set. */
typedef struct pk_low_rank_options {
    size_t struct_size;
    int64_t rank;                   /* the rank r, 1 ... min(rows, cols); 0 (default) = by energy */
    double energy;                  /* rank 0: the smallest r whose s_1^2 + ... + s_r^2 reaches this
                                       fraction, in (0, 1], of the sum of all s_i^2 (the share of
                                       ||W X^T||^2 kept), at least 1; default 0 (unset) */
    double dampening;               /* fraction of the mean Hessian diagonal added to it (inputs that
                                       never fire get 1 first), as in reconstruction; default 0.01 */
    int32_t max_dampening_retries;  /* not positive definite: retry with 10x the dampening (at least
                                       1e-8 of the mean diagonal) this many times, default 4 */
    int32_t num_threads;            /* 0 = one per CPU; results do not depend on it */
} pk_low_rank_options;

/* Fills *options with the defaults above and sets struct_size. The defaults alone are rejected by
 * pk_low_rank: set a rank or an energy.
 * @param[out] options  the struct to fill.
 * @retval PK_OK, PK_ERROR_NULL_POINTER */
PK_API pk_status pk_low_rank_options_init(pk_low_rank_options *options);

/* Activation-aware low rank (CSKV's channel shrinking for key and value projections, the low-rank
 * half of sparse + low-rank): W (rows x cols) ~ A B, A rows x r, B r x cols, minimising
 * ||(W - A B) X^T||_F for the calibration inputs X, i.e. tr((W - AB) H (W - AB)^T), H = X^T X
 * (any positive multiple; pk_stats_gram). With the lower Cholesky factor H = L L^T of the
 * dampened H this is the truncated SVD of W L = U S V^T: A = U_r (orthonormal columns, each with its
 * largest-magnitude entry, the first on ties, positive), B = S_r V_r^T L^-1; the squared error is
 * the sum of the dropped s_i^2. For a key or value projection the cache holds B x (r numbers per
 * token instead of rows) and A restores the full width. Arithmetic in float64. Outputs are
 * written only on success; the rest of a_out and b_out is left as it was. Keeps nothing.
 * @param weights                   the layer, any dtype.
 * @param hessian                   hessian_size x hessian_size doubles, symmetric.
 * @param hessian_size              must equal cols.
 * @param options                   rank or energy, dampening, threads (struct_size set).
 * @param[out] a_out                rows x capacity, any dtype and stride, capacity >= r: its
 *                                  first r columns receive A.
 * @param[out] b_out                capacity x cols: its first r rows receive B.
 * @param[out] rank_out             receives r.
 * @param[out] singular_values_out  min(rows, cols) doubles, the s_i of W L in descending
 *                                  order; may be NULL.
 * @retval PK_OK
 * @retval PK_ERROR_NULL_POINTER weights, hessian, options, a_out, b_out or rank_out
 * @retval PK_ERROR_INVALID_SHAPE hessian_size != cols, a_out's rows != rows, b_out's cols != cols
 * @retval PK_ERROR_INVALID_ARGUMENT rank outside 0 ... min(rows, cols), rank and energy both set or
 *         both unset, energy outside (0, 1], dampening or retries out of range, a non-symmetric
 *         hessian or a negative diagonal
 * @retval PK_ERROR_BUFFER_TOO_SMALL a_out has fewer than r columns or b_out fewer than r rows
 * @retval PK_ERROR_UNSUPPORTED_DTYPE, PK_ERROR_STRUCT_SIZE
 * @retval PK_ERROR_NON_FINITE a non-finite weight or hessian entry
 * @retval PK_ERROR_NUMERIC not positive definite after the retries, or the SVD failed
 * @retval PK_ERROR_OUT_OF_MEMORY */
PK_API pk_status pk_low_rank(const pk_matrix *weights, const double *hessian, int64_t hessian_size,
                             const pk_low_rank_options *options, const pk_matrix *a_out,
                             const pk_matrix *b_out, int64_t *rank_out, double *singular_values_out);

/* ========================================================================================== */
/* 7. Structures. Structured pruning: channels, heads, blocks; coupled groups; compaction     */
/* ========================================================================================== */

/* PruneKit cannot see a model graph, so the host declares what belongs together: a group is the
 * set of tensors (members) that share one structural axis, e.g. for an MLP's hidden channels the
 * rows of the first layer, its bias, and the columns of the second layer; for a conv channel the
 * conv's rows, the batch-norm vectors and the next conv's columns (span kh*kw); for attention
 * heads the q, k and v rows (span head_dim) and the output projection's columns (span head_dim).
 * A vector (bias, batch-norm scale) is a 1 x n matrix split along its columns.
 *
 * Structure scores are float64. For PK_STRUCTURE_CRITERION_L1 / _L2 each scored member's entry
 * scores (its criterion, e.g. magnitude, Wanda) are summed over the structure as |s| / s^2 in
 * float64 (L2 then takes the square root), then reduced across the scored members and normalised
 * per group. Selection ranks by (score, index) ascending inside a group, by (score, group, index)
 * across the groups of a stage; counts are exact as elsewhere: floor(ratio * n) in IEEE double.
 * Results never depend on num_threads. */

enum pk_axis {
    PK_AXIS_ROWS = 0,    /* structure i = rows [i*span, (i+1)*span) */
    PK_AXIS_COLS = 1,    /* structure i = columns [i*span, (i+1)*span) */
    PK_AXIS_BLOCKS = 2   /* structure (i, j) = rows [i*span, (i+1)*span) x columns
                            [j*block_cols, (j+1)*block_cols) (the last ones may be smaller),
                            numbered i * ceil(cols / block_cols) + j; cannot be compacted */
};

/* One tensor of a group. This struct is frozen: it will not grow. */
typedef struct pk_group_member {
    pk_matrix tensor;                /* read; written only by pk_apply_structures and
                                        pk_permute_group */
    int32_t axis;                    /* enum pk_axis */
    int32_t scored;                  /* 1: its entries count towards the structure scores;
                                        0: it is only compacted or masked (not checked for
                                        non-finite values) */
    int64_t span;                    /* rows (ROWS, BLOCKS) or columns (COLS) per structure, > 0;
                                        the extent along the axis must be a multiple (not BLOCKS) */
    int64_t block_cols;              /* BLOCKS: columns per block; otherwise ignored */
    const pk_criterion *criterion;   /* entry scores for L1/L2 (NULL = magnitude); Wanda's and
                                        STADE's feature_values index this tensor's columns */
} pk_group_member;

/* A group. This struct is frozen: it will not grow. */
typedef struct pk_group {
    const pk_group_member *members;
    int64_t member_count;            /* > 0; every member has the same number of structures */
    int64_t min_keep;                /* structures the group always keeps, 0 ... n */
    int32_t stage;                   /* groups of one stage are ranked together (GLOBAL), keep
                                        the same count (UNIFORM) and share a stage value; 0 ...
                                        stage_count - 1 (0 when there are no stage values) */
    int32_t reserved;                /* set to 0 */
    const pk_stats *activations;     /* PK_STRUCTURE_CRITERION_MEAN_ABS_ACTIVATION /
                                        _NONZERO_FRACTION: statistics of the structures' outputs,
                                        features = n * k (k features per structure, averaged);
                                        else NULL */
} pk_group;

enum pk_structure_criterion {
    PK_STRUCTURE_CRITERION_L1 = 0,   /* sum of |entry score| over the structure: magnitude -> L1
                                        norm, Wanda -> activation-weighted norm, Taylor -> sum
                                        |w*g|; a batch-norm scale vector as the only scored
                                        member -> |gamma| (network slimming) */
    PK_STRUCTURE_CRITERION_L2 = 1,   /* sqrt of the sum of squared entry scores (L2 norm for
                                        magnitude) */
    PK_STRUCTURE_CRITERION_MEAN_ABS_ACTIVATION = 2,   /* mean |x| of the outputs
                                                         (group->activations) */
    PK_STRUCTURE_CRITERION_NONZERO_FRACTION = 3,      /* 1 - zero fraction of the outputs
                                                         (1 - APoZ) */
    /* Earlier names, same values: */
    PK_STRUCTURE_L1 = PK_STRUCTURE_CRITERION_L1,
    PK_STRUCTURE_L2 = PK_STRUCTURE_CRITERION_L2,
    PK_STRUCTURE_MEAN_ABS_ACTIVATION = PK_STRUCTURE_CRITERION_MEAN_ABS_ACTIVATION,
    PK_STRUCTURE_NONZERO_FRACTION = PK_STRUCTURE_CRITERION_NONZERO_FRACTION
};

enum pk_reduction {   /* across scored members */
    PK_REDUCTION_SUM = 0, PK_REDUCTION_MEAN = 1, PK_REDUCTION_MAX = 2,
    /* Earlier names, same values: */
    PK_REDUCE_SUM = PK_REDUCTION_SUM, PK_REDUCE_MEAN = PK_REDUCTION_MEAN, PK_REDUCE_MAX = PK_REDUCTION_MAX
};

enum pk_normalization {    /* per group, before selection; a zero divisor leaves scores as they are */
    PK_NORMALIZATION_NONE = 0, PK_NORMALIZATION_MEAN = 1, PK_NORMALIZATION_MAX = 2,
    PK_NORMALIZATION_SUM = 3,
    PK_NORMALIZATION_STANDARD = 4,   /* (s - mean) / std */
    /* Earlier names, same values: */
    PK_NORMALIZE_NONE = PK_NORMALIZATION_NONE, PK_NORMALIZE_MEAN = PK_NORMALIZATION_MEAN,
    PK_NORMALIZE_MAX = PK_NORMALIZATION_MAX, PK_NORMALIZE_SUM = PK_NORMALIZATION_SUM,
    PK_NORMALIZE_STANDARD = PK_NORMALIZATION_STANDARD
};

enum pk_structure_mode {
    PK_STRUCTURE_MODE_PER_GROUP = 0,   /* each group prunes floor(value * n) of its n structures */
    PK_STRUCTURE_MODE_GLOBAL = 1,      /* the groups of a stage are ranked together:
                                          floor(value * total) pruned, skipping groups down to
                                          min_keep */
    PK_STRUCTURE_MODE_UNIFORM = 2,     /* every group of a stage keeps n_min - floor(value * n_min),
                                          n_min its smallest group: the same width everywhere */
    PK_STRUCTURE_MODE_THRESHOLD = 3,   /* structures whose score is below the stage's value are
                                          pruned; a group keeps at least min_keep (its best) */
    /* Earlier names, same values: */
    PK_SELECT_PER_GROUP = PK_STRUCTURE_MODE_PER_GROUP,
    PK_SELECT_GLOBAL = PK_STRUCTURE_MODE_GLOBAL,
    PK_SELECT_UNIFORM = PK_STRUCTURE_MODE_UNIFORM,
    PK_SELECT_THRESHOLD = PK_STRUCTURE_MODE_THRESHOLD
};

/* Option struct: set struct_size = sizeof(pk_structure_options) (pk_structure_options_init does). */
typedef struct pk_structure_options {
    size_t struct_size;
    int32_t criterion;            /* enum pk_structure_criterion; default PK_STRUCTURE_CRITERION_L2 */
    int32_t reduction;            /* enum pk_reduction; default PK_REDUCTION_SUM */
    int32_t normalization;        /* enum pk_normalization; default PK_NORMALIZATION_NONE */
    int32_t mode;                 /* enum pk_structure_mode; default PK_STRUCTURE_MODE_PER_GROUP */
    double ratio;                 /* the value (fraction pruned, in [0, 1]; the threshold in
                                     THRESHOLD mode) of every group when stage_values is NULL;
                                     default 0.5 */
    const double *stage_values;   /* NULL, or stage_count values indexed by group->stage */
    int64_t stage_count;
    int64_t multiple;             /* kept counts are rounded up to a multiple of this (never above
                                     the group's size), after min_keep; default 1 */
    const double *scores;         /* NULL, or the caller's structure scores (all groups, in
                                     order): used instead of computing them; still normalised */
    int32_t num_threads;          /* 0 = one per CPU; results do not depend on it */
    int32_t reserved;             /* set to 0 */
} pk_structure_options;

/* Fills *options with the defaults above and sets struct_size.
 * @param[out] options  the struct to fill.
 * @retval PK_OK, PK_ERROR_NULL_POINTER */
PK_API pk_status pk_structure_options_init(pk_structure_options *options);

/* Scores and selects the structures of group_count groups. Writes only on success. Keeps
 * nothing.
 * @param groups           group_count groups.
 * @param group_count      > 0.
 * @param options          criterion, reduction, normalization, mode, ratios (struct_size set).
 * @param[out] keep_out    one byte per structure, 1 = keep, the groups' structures
 *                         concatenated in order.
 * @param[out] scores_out  as many doubles: the normalised scores the selection ranked; may be
 *                         NULL.
 * @retval PK_OK
 * @retval PK_ERROR_NULL_POINTER, PK_ERROR_UNSUPPORTED_DTYPE, PK_ERROR_STRUCT_SIZE
 * @retval PK_ERROR_INVALID_SHAPE group_count <= 0, members disagreeing in their number of
 *         structures, an extent that is not a multiple of the span, activations of the wrong size
 * @retval PK_ERROR_INVALID_ARGUMENT an unknown enum value (axis, criterion, mode, ...), span <= 0,
 *         a ratio outside [0, 1], a stage out of range, min_keep outside 0 ... n, a min_keep that
 *         makes the target impossible, a group with no scored member
 * @retval PK_ERROR_NON_FINITE a non-finite weight, score or threshold
 * @retval PK_ERROR_OUT_OF_MEMORY */
PK_API pk_status pk_select_structures(const pk_group *groups, int64_t group_count,
                                      const pk_structure_options *options, uint8_t *keep_out,
                                      double *scores_out);

/* Closed-form compensation of one member while compacting. This struct is frozen. */
typedef struct pk_compensation {
    int64_t member;                                  /* index of a PK_AXIS_COLS member */
    const double *hessian;                           /* its cols x cols Hessian (X^T X) */
    int64_t hessian_size;                            /* its cols */
    const pk_reconstruction_options *options;        /* dampening, precision; NULL = defaults */
} pk_compensation;

/* Compacts every member of a group by a selection: outputs[i] receives member i without its
 * pruned rows (ROWS) or columns (COLS), in the same dtype: (kept * span) x cols or
 * rows x (kept * span). With compensation, the column member it names is first updated in
 * closed form for its removed columns, as pk_prune_columns does (least squares on its Hessian),
 * then compacted. Writes only on success; keeps nothing.
 * @param group                  the group, read.
 * @param keep                   one byte per structure, 0 or 1; at least one kept.
 * @param compensation           NULL, or the column member to compensate.
 * @param[out] outputs           member_count matrices, each the compacted shape and dtype of
 *                               its member, not overlapping the members or each other.
 * @param[out] kept_indices_out  the kept structure indices in increasing order; may be NULL.
 * @retval PK_OK
 * @retval PK_ERROR_NULL_POINTER, PK_ERROR_INVALID_SHAPE (members disagree)
 * @retval PK_ERROR_BUFFER_TOO_SMALL an output smaller than its compacted member
 * @retval PK_ERROR_INVALID_SHAPE an output of another shape
 * @retval PK_ERROR_UNSUPPORTED_DTYPE an output of another dtype
 * @retval PK_ERROR_INVALID_ARGUMENT a keep byte other than 0 or 1, nothing kept, a BLOCKS member,
 *         overlapping outputs, a compensation member that is not a COLS member
 * @retval the codes of pk_prune_columns for the compensation */
PK_API pk_status pk_compact_group(const pk_group *group, const uint8_t *keep,
                                  const pk_compensation *compensation, const pk_matrix *outputs,
                                  int64_t *kept_indices_out);

/* Sets the pruned structures (keep byte 0) of every member to +0.0 in place: the selection
 * applied as masks, shapes unchanged. Checks everything before writing.
 * @param[in,out] group  the group; its members' tensors are written.
 * @param keep           one byte per structure, 0 or 1.
 * @retval PK_OK, PK_ERROR_NULL_POINTER, PK_ERROR_INVALID_SHAPE, PK_ERROR_UNSUPPORTED_DTYPE
 * @retval PK_ERROR_INVALID_ARGUMENT a keep byte other than 0 or 1 */
PK_API pk_status pk_apply_structures(const pk_group *group, const uint8_t *keep);

/* Permutes the structures of every member in place: structure j becomes the old structure
 * permutation[j] (rows or columns, span at a time). With the producer's rows, its bias and the
 * consumer's columns as members, the network computes the same function afterwards; this is how a
 * pk_channel_permutation is applied. Members must not share memory. Checks everything before
 * writing. Keeps nothing.
 * @param[in,out] group  the members to permute (their tensors are written).
 * @param permutation    count entries, a permutation of 0 ... count - 1.
 * @param count          the group's number of structures.
 * @retval PK_OK, PK_ERROR_NULL_POINTER, PK_ERROR_UNSUPPORTED_DTYPE, PK_ERROR_OUT_OF_MEMORY
 * @retval PK_ERROR_INVALID_SHAPE count differing from the group's structures, members disagreeing
 * @retval PK_ERROR_INVALID_ARGUMENT an entry outside 0 ... count - 1 or repeated, a BLOCKS member */
PK_API pk_status pk_permute_group(const pk_group *group, const int64_t *permutation, int64_t count);

/* The entry mask of one member's tensor under a selection, e.g. the block mask of a
 * PK_AXIS_BLOCKS member. Writes mask_out only on success.
 * @param group          the group, read.
 * @param member         the member's index, in [0, member_count).
 * @param keep           one byte per structure, 0 or 1.
 * @param[out] mask_out  rows*cols bytes of the member's tensor, 1 = keep.
 * @retval PK_OK, PK_ERROR_NULL_POINTER, PK_ERROR_INVALID_SHAPE
 * @retval PK_ERROR_INVALID_ARGUMENT a keep byte other than 0 or 1, member out of range */
PK_API pk_status pk_structure_mask(const pk_group *group, int64_t member, const uint8_t *keep,
                                   uint8_t *mask_out);

/* The layout of a group: its number of structures and, when `kept` of them stay, the shape each
 * member compacts to (what pk_compact_group's outputs must be): (kept * span) x cols for a ROWS
 * member, rows x (kept * span) for a COLS member. Checks the group as every structured call
 * does (axis, span, whole numbers of structures, members agreeing); reads the members' shapes,
 * axes and spans (their data pointers must be set, as in every call, but are not read). Writes
 * the outputs only on success; keeps nothing.
 * @param group                the group whose members' tensors, axes and spans are read
 * @param kept                 the number of structures kept, 0 ... the structure count; read
 *                             only when shapes_out is not NULL
 * @param structure_count_out  receives the group's number of structures (keep bytes per selection)
 * @param shapes_out           NULL, or 2 * member_count values: rows then cols of each member's
 *                             compacted shape, in member order
 * @retval PK_OK, PK_ERROR_NULL_POINTER, PK_ERROR_UNSUPPORTED_DTYPE
 * @retval PK_ERROR_INVALID_SHAPE members disagreeing in their number of structures, an extent that
 *         is not a multiple of the span
 * @retval PK_ERROR_INVALID_ARGUMENT an unknown axis, span <= 0, kept outside 0 ... the structure
 *         count, shapes asked for a BLOCKS member (blocks are masked, not compacted) */
PK_API pk_status pk_group_layout(const pk_group *group, int64_t kept, int64_t *structure_count_out,
                                 int64_t *shapes_out);

/* Data-free compensation (UDFC: Bai et al., "Unified Data-Free Compression: Pruning and
 * Quantization without Fine-Tuning", ICCV 2023) for a group that carries batch-norm members:
 * layer -> batch norm -> activation -> next layer, the group holding the layer's rows (the
 * "producer"), the four batch-norm vectors (1 x n, span 1) and the next layer's columns. The
 * next layer takes over each pruned channel p as a linear combination of the kept channels k,
 * W'[:, k] += sum_p s[k][p] W'[:, p] (every offset of the member's span, e.g. a conv's kh * kw),
 * from the weights and batch-norm statistics alone, with no calibration data.
 *
 * s and a constant t_p are the least-squares reconstruction of each pruned channel's output
 * a_p = act(y_p) from the kept channels' outputs, E[(a_p - sum_k s[k][p] a_k - t_p)^2] minimal,
 * under the data-free model: the batch norm's output y_c is Gaussian with mean beta_c and
 * standard deviation sd_c = |gamma_c| sqrt(var_c / (var_c + eps)); isotropic layer inputs, so
 * cov(y_i, y_j) = sign(gamma_i gamma_j) sd_i sd_j cos(f_i, f_j) with f_c the producer's filter of
 * channel c (its rows, flattened; a zero filter correlates with nothing); through ReLU the
 * means and variances of the rectified Gaussian exactly and cov(a_i, a_j) = Phi_i Phi_j
 * cov(y_i, y_j) (Phi_c = P(y_c > 0); Stein's lemma). Then s = (C_KK + lambda I)^-1 C_KP with
 * lambda = dampening * mean(diag C_KK) (s = 0 when every kept channel is constant) and
 * t_p = E[a_p] - sum_k s[k][p] E[a_k], which the next layer's bias absorbs:
 * bias_shift[r] = sum_p t_p sum_e W'[r][p * span + e] (exact away from a conv's zero padding). */

enum pk_activation {
    PK_ACTIVATION_RELU = 0,      /* batch norm -> ReLU -> next layer */
    PK_ACTIVATION_IDENTITY = 1   /* batch norm -> next layer (the reconstruction is then the exact
                                    Gaussian least squares) */
};

/* Option struct: set struct_size = sizeof(pk_data_free_options) (pk_data_free_options_init does).
 * The member indices have no default (-1): set them. */
typedef struct pk_data_free_options {
    size_t struct_size;
    int64_t producer;        /* the PK_AXIS_ROWS member: the layer whose channels are pruned */
    int64_t next;            /* the PK_AXIS_COLS member compensated: the next layer */
    int64_t bn_weight;       /* the batch norm's gamma, beta, running mean and running variance: */
    int64_t bn_bias;         /*   1 x n members (PK_AXIS_COLS, span 1), n = the group's */
    int64_t bn_mean;         /*   structures; checked finite (variance >= 0, variance + eps > 0) */
    int64_t bn_var;
    double epsilon;          /* the batch norm's eps, >= 0; default 1e-5 (PyTorch's) */
    double dampening;        /* ridge as a fraction of the kept covariance's mean diagonal, >= 0;
                                default 0.01 (needed when more channels stay than a filter has
                                entries) */
    int32_t activation;      /* enum pk_activation; default PK_ACTIVATION_RELU */
    int32_t num_threads;     /* for the copies, 0 = one per CPU; results do not depend on it */
} pk_data_free_options;

/* Fills *options with the defaults above (member indices -1) and sets struct_size.
 * @param[out] options  the struct to fill.
 * @retval PK_OK, PK_ERROR_NULL_POINTER */
PK_API pk_status pk_data_free_options_init(pk_data_free_options *options);

/* Compacts every member of a group by a selection, as pk_compact_group, after compensating the
 * next member for the pruned channels in closed form (above), in float64, stored back in its dtype.
 * Writes only on success; keeps nothing.
 * @param group                  the group: producer rows, batch-norm vectors, next columns, and
 *                               any other members (compacted alike).
 * @param keep                   one byte per structure, 1 = keep, 0 = pruned; at least one kept.
 * @param options                member indices, epsilon, dampening, activation (not NULL).
 * @param[out] outputs           member_count matrices, each the compacted shape and dtype of its
 *                               member (the next one receives the compensated weight), not
 *                               overlapping the members or each other.
 * @param[out] kept_indices_out  the kept structure indices in increasing order; may be NULL.
 * @param[out] bias_shift_out    bias_shift_length doubles: the shift to add to the next layer's
 *                               bias (or to subtract from its own batch norm's running mean);
 *                               may be NULL.
 * @param bias_shift_length      the next member's rows (0 with a NULL bias_shift_out).
 * @retval PK_OK
 * @retval PK_ERROR_NULL_POINTER, PK_ERROR_STRUCT_SIZE, PK_ERROR_UNSUPPORTED_DTYPE (an output of
 *         another dtype), PK_ERROR_BUFFER_TOO_SMALL (an output smaller than its compacted member)
 * @retval PK_ERROR_INVALID_SHAPE members disagreeing in their structure counts, an output of
 *         another shape, a batch-norm member that is not 1 x n, bias_shift_length other than the
 *         next member's rows
 * @retval PK_ERROR_INVALID_ARGUMENT a keep byte other than 0 or 1, nothing kept, a member index
 *         outside the group or of the wrong axis, the producer as next, a BLOCKS member, an
 *         unknown activation, epsilon or dampening negative or not finite, a negative variance,
 *         variance + eps = 0, overlapping outputs
 * @retval PK_ERROR_NON_FINITE a non-finite weight of the producer or the next member, or
 *         batch-norm entry
 * @retval PK_ERROR_NUMERIC the kept covariance is singular (dampening 0), the compensated weight
 *         overflows its dtype
 * @retval PK_ERROR_OUT_OF_MEMORY */
PK_API pk_status pk_compact_group_data_free(const pk_group *group, const uint8_t *keep,
                                            const pk_data_free_options *options, const pk_matrix *outputs,
                                            int64_t *kept_indices_out, double *bias_shift_out,
                                            int64_t bias_shift_length);

/* Key-cache channel pruning driven by the queries (ThinK): for key head h and channel c the
 * score is ||K[:, h*d + c]|| * sqrt(sum over the query heads of its group of ||Q[:, q*d + c]||^2),
 * the Frobenius norm of the channel's rank-one term in Q K^T (norms in float64). Each head drops
 * floor(ratio * d) channels, ranked by (score, channel) ascending. Writes only on success. Keeps
 * nothing.
 * @param queries          [query tokens, query_heads * d], query_heads a multiple of heads
 *                         (grouped-query attention).
 * @param keys             [key tokens, heads * d].
 * @param heads            the number of key heads, > 0.
 * @param ratio            the fraction of each head's channels dropped, in [0, 1].
 * @param[out] keep_out    heads * d bytes, 1 = keep.
 * @param[out] scores_out  heads * d doubles; may be NULL.
 * @retval PK_OK, PK_ERROR_NULL_POINTER, PK_ERROR_UNSUPPORTED_DTYPE, PK_ERROR_NON_FINITE
 * @retval PK_ERROR_INVALID_SHAPE heads <= 0 or not dividing the widths
 * @retval PK_ERROR_INVALID_ARGUMENT ratio outside [0, 1] or NaN */
PK_API pk_status pk_key_channels(const pk_matrix *queries, const pk_matrix *keys, int64_t heads,
                                 double ratio, uint8_t *keep_out, double *scores_out);

/* Pruning at inference time. The three functions below are for a serving loop: they run on the
 * calling thread, allocate no memory (except to record a failure's message), start no threads and
 * keep nothing, so any number of threads may call them at once on their own outputs. */

/* Per-sample channel gating (dynamic pruning, "Fire Together Wire Together"): for every row t of
 * scores, the k channels the library's ranking keeps: channels ranked by (score, channel)
 * ascending, the first channels - k are dropped, so among equal scores the higher channel stays.
 * Writes only after every score was checked. Keeps nothing.
 * @param scores            samples x channels, float32: gate scores, or with magnitude = 1 the
 *                          activations themselves, scored by |x|.
 * @param k                 the channels kept per sample, 1 ... channels.
 * @param magnitude         0: rank the scores; 1: rank |score|.
 * @param[out] indices_out  samples * k entries: indices_out[t * k ... t * k + k - 1] are row t's
 *                          kept channels in increasing order.
 * @retval PK_OK, PK_ERROR_NULL_POINTER, PK_ERROR_INVALID_SHAPE (scores' sizes, 2^32 channels or more)
 * @retval PK_ERROR_UNSUPPORTED_DTYPE scores not float32
 * @retval PK_ERROR_INVALID_ARGUMENT k outside 1 ... channels, magnitude not 0 or 1
 * @retval PK_ERROR_NON_FINITE a non-finite score (the message names sample and channel) */
PK_API pk_status pk_top_channels(const pk_matrix *scores, int64_t k, int32_t magnitude, int64_t *indices_out);

/* Gathers rows or columns of source (any order, repeats allowed) into out. With a sample's
 * pk_top_channels indices and the next layer's weight [out, channels] (columns), or its transpose
 * (rows), out is the dense sub-matrix of a smaller GEMM. Writes only after every index was
 * checked. Keeps nothing.
 * @param source      the matrix gathered from.
 * @param axis        PK_AXIS_ROWS or PK_AXIS_COLS.
 * @param indices     count row or column indices of source.
 * @param count       > 0.
 * @param[out] out    count x cols (rows) or rows x count (columns), the dtype of source, any
 *                    stride, not overlapping source.
 * @retval PK_OK, PK_ERROR_NULL_POINTER
 * @retval PK_ERROR_INVALID_SHAPE count <= 0, out of another shape
 * @retval PK_ERROR_UNSUPPORTED_DTYPE out of another dtype than source
 * @retval PK_ERROR_INVALID_ARGUMENT an index out of range, an axis other than ROWS or COLS */
PK_API pk_status pk_gather(const pk_matrix *source, int32_t axis, const int64_t *indices, int64_t count,
                           const pk_matrix *out);

/* Importance-aware randomised channel pruning (MACPruning, a defence against side-channel model
 * extraction): channel c is kept (mask_out[c] = 1) when importance[c] >= threshold; otherwise it is
 * dropped (0) when u_c < drop_probability, u_c the uniform draw PK_CRITERION_RANDOM documents for
 * position c with this seed. So one seed gives the same mask in every language; use a new seed for
 * every call (a secret base plus a call counter) to get a fresh mask. Writes only after every
 * check. Keeps nothing.
 * @param importance        count floats, finite.
 * @param count             > 0.
 * @param threshold         channels at or above it are always kept; not NaN.
 * @param drop_probability  in [0, 1].
 * @param seed              the draw's seed.
 * @param[out] mask_out     count bytes, 1 = keep.
 * @retval PK_OK, PK_ERROR_NULL_POINTER, PK_ERROR_INVALID_SHAPE count <= 0
 * @retval PK_ERROR_INVALID_ARGUMENT drop_probability outside [0, 1], a NaN threshold
 * @retval PK_ERROR_NON_FINITE a non-finite importance */
PK_API pk_status pk_random_channel_mask(const float *importance, int64_t count, double threshold,
                                        double drop_probability, uint64_t seed, uint8_t *mask_out);

/* ========================================================================================== */
/* 8. Export formats: pruned weights as consumers load them, and back                         */
/* ========================================================================================== */

/* Values keep the weights' dtype and are written contiguously. An entry is present when it is
 * non-zero (+0.0 and -0.0 are zeros). Layouts, also in docs/sparse-formats.md:
 *  - 2:4 compressed: values rows x cols/2 (group g's two kept values at 2g and 2g+1, in column
 *    order); metadata rows x ceil(cols/8) bytes, one nibble per group of 4 columns in byte g/2
 *    (low nibble for even g): bits 0-1 the first kept position (0-3), bits 2-3 the second,
 *    first < second; an unused last high nibble is 0. A group with fewer than 2 non-zeros keeps
 *    zeros at its lowest free positions. (Row-major; cuSPARSELt's tensor-core ordering of the
 *    same nibbles is a permutation of this.)
 *  - CSR: row_offsets rows + 1, columns nnz (both int64; columns increase within a row), values nnz.
 *  - Bit mask: bits rows x ceil(cols/8) bytes (bit j % 8 of byte j / 8 of a row: entry j is
 *    present), values nnz in row-major order.
 * Export functions read the weights (non-finite values are an error) and write only on success;
 * import functions check the structure before writing dense_out (zeros where nothing is stored;
 * any dtype, its values read in that dtype). None keeps a pointer. */

/* The number of non-zero entries (for sizing CSR and bit-mask outputs).
 * @param weights       the matrix, any dtype.
 * @param[out] nnz_out  receives the count.
 * @retval PK_OK, PK_ERROR_NULL_POINTER, PK_ERROR_INVALID_SHAPE, PK_ERROR_UNSUPPORTED_DTYPE,
 *         PK_ERROR_NON_FINITE */
PK_API pk_status pk_count_nonzero(const pk_matrix *weights, int64_t *nnz_out);

/* 2:4 compression (pk_export_24) and back (pk_import_24).
 * @param weights            the matrix, at most 2 non-zeros in every group of 4 columns.
 * @param[out] values_out    rows x cols/2 values in the weights' dtype.
 * @param[out] metadata_out  rows x ceil(cols/8) bytes.
 * @param values             the values, in dense_out's dtype.
 * @param metadata           the metadata.
 * @param[out] dense_out     receives the dense matrix; cols divisible by 4.
 * @retval PK_ERROR_INVALID_SHAPE cols not divisible by 4
 * @retval PK_ERROR_INVALID_ARGUMENT a group of 4 with more than 2 non-zeros (the message names it)
 * @retval PK_ERROR_CORRUPT_DATA metadata whose positions do not increase (import) */
PK_API pk_status pk_export_24(const pk_matrix *weights, void *values_out, uint8_t *metadata_out);
PK_API pk_status pk_import_24(const void *values, const uint8_t *metadata, const pk_matrix *dense_out);

/* CSR (pk_export_csr) and back (pk_import_csr). On import row_offsets holds rows + 1 entries,
 * columns and values row_offsets[rows] entries each; every offset is checked before any column is
 * read, so offsets that are not non-decreasing never make the library read past columns.
 * @param weights               the matrix, any dtype.
 * @param capacity              the room, in entries, in columns_out and values_out.
 * @param[out] row_offsets_out  rows + 1 int64.
 * @param[out] columns_out      nnz int64.
 * @param[out] values_out       nnz values in the weights' dtype.
 * @param row_offsets           rows + 1 int64, starting at 0, non-decreasing.
 * @param columns               the column of each value, increasing within a row.
 * @param values                the values, in dense_out's dtype.
 * @param[out] dense_out        receives the dense matrix.
 * @retval PK_ERROR_BUFFER_TOO_SMALL capacity < nnz (export)
 * @retval PK_ERROR_CORRUPT_DATA offsets not starting at 0 or decreasing, columns out of range or
 *         not increasing within a row (import) */
PK_API pk_status pk_export_csr(const pk_matrix *weights, int64_t capacity, int64_t *row_offsets_out,
                               int64_t *columns_out, void *values_out);
PK_API pk_status pk_import_csr(const int64_t *row_offsets, const int64_t *columns, const void *values,
                               const pk_matrix *dense_out);

/* Bit mask (pk_export_bitmask) and back (pk_import_bitmask).
 * @param weights          the matrix, any dtype.
 * @param capacity         the room, in values, in values_out.
 * @param[out] bits_out    rows x ceil(cols/8) bytes.
 * @param[out] values_out  nnz values in the weights' dtype, row-major.
 * @param bits             rows x ceil(cols/8) bytes.
 * @param values           as many values as bits are set, in dense_out's dtype.
 * @param[out] dense_out   receives the dense matrix.
 * @retval PK_ERROR_BUFFER_TOO_SMALL capacity < nnz (export)
 * @retval PK_ERROR_CORRUPT_DATA bits set past the last column (import) */
PK_API pk_status pk_export_bitmask(const pk_matrix *weights, int64_t capacity, uint8_t *bits_out, void *values_out);
PK_API pk_status pk_import_bitmask(const uint8_t *bits, const void *values, const pk_matrix *dense_out);

/* ========================================================================================== */
/* 9. Progressive pruning: schedules, pruners, soft masks, host-driven loops                  */
/* ========================================================================================== */

enum pk_schedule_kind {
    PK_SCHEDULE_ONESHOT = 0,      /* the final sparsity from begin on */
    PK_SCHEDULE_LINEAR = 1,       /* s_i + (s_f - s_i) * p */
    PK_SCHEDULE_CUBIC = 2,        /* s_f + (s_i - s_f) * pow(1 - p, 3)   (Zhu and Gupta 2017) */
    PK_SCHEDULE_EXPONENTIAL = 3   /* 1 - pow(1 - s_i, 1 - p) * pow(1 - s_f, p): the density
                                     shrinks geometrically */
};

/* A sparsity schedule over training steps. Before begin the sparsity is 0. From begin on it
 * changes only at the update points begin, begin + frequency, begin + 2 * frequency, ... and end:
 * step t is governed by the last update point at or before it (end from end on; begin for
 * ONESHOT), with p = (point - begin) / (end - begin) in IEEE double; p = 0 gives exactly s_i and
 * p = 1 (every step from end on) exactly s_f. Option struct: set struct_size (pk_schedule_init). */
typedef struct pk_schedule {
    size_t struct_size;
    int32_t kind;              /* enum pk_schedule_kind; default PK_SCHEDULE_CUBIC */
    int32_t reserved;          /* set to 0 */
    int64_t begin;             /* >= 0; default 0 */
    int64_t end;               /* >= begin; default 1000 */
    int64_t frequency;         /* >= 1; default 100 */
    double initial_sparsity;   /* s_i in [0, 1], <= every final sparsity; default 0 */
    double final_sparsity;     /* s_f in [0, 1]; default 0.5 (per-layer targets replace it) */
} pk_schedule;

/* Fills *schedule with the defaults above and sets struct_size.
 * @param[out] schedule  the struct to fill.
 * @retval PK_OK, PK_ERROR_NULL_POINTER */
PK_API pk_status pk_schedule_init(pk_schedule *schedule);

/* The scheduled sparsity at training step `step` (any int64; before begin 0).
 * @param schedule      the schedule (struct_size set).
 * @param step          the training step.
 * @param[out] sparsity_out  receives the sparsity in [0, 1].
 * @retval PK_OK, PK_ERROR_NULL_POINTER, PK_ERROR_STRUCT_SIZE
 * @retval PK_ERROR_INVALID_ARGUMENT a field out of range */
PK_API pk_status pk_schedule_sparsity(const pk_schedule *schedule, int64_t step, double *sparsity_out);

/* A progressive pruner: layers, a criterion per layer, a selection and a schedule. At every
 * training step the host calls pk_pruner_step; at a new update point of the schedule the pruner
 * recomputes each layer's mask from the weights as they are, with the library's own criteria and
 * selections (the mask equals pk_mask's at that step's sparsity), and at every step it writes
 * the host's weights: pruned ones +0.0, decaying ones their value when chosen times the decay
 * factor.
 *
 * THE PRUNER KEEPS THE WEIGHT POINTERS (weights[i].data) passed to pk_pruner_create and writes
 * through them in pk_pruner_step, until pk_pruner_free: the host's weight memory must stay valid,
 * at the same address, for the pruner's lifetime. It keeps no other pointer (feature values are
 * copied). Handles are a table index plus a generation, as pk_stats's: a freed or forged handle
 * is PK_ERROR_INVALID_ARGUMENT. Calls on one handle from several threads are serialized. */
typedef struct pk_pruner pk_pruner;

/* Option struct: set struct_size = sizeof(pk_pruner_options) (pk_pruner_options_init does). A
 * struct_size of offsetof(pk_pruner_options, soft_temperature) (the layout before soft_temperature
 * was appended) is accepted and gives hard masks. */
typedef struct pk_pruner_options {
    size_t struct_size;
    int64_t decay_steps;         /* decaying masks (DPM): a weight chosen at step t0 is scaled by
                                    max(0, 1 - (t - t0 + 1) / decay_steps) at step t instead of
                                    being cut, and restored to its value when chosen if a later
                                    mask keeps it; 0 or 1 = cut at once (default 0) */
    double gradient_momentum;    /* PK_CRITERION_TAYLOR in a pruner is gradient flow: the scores
                                    are e = momentum * e + (1 - momentum) * |w * g| (float32) over
                                    the gradients passed with every step; in [0, 1), default 0.9 */
    int32_t num_threads;         /* 0 = selection->num_threads (0 there: one per CPU); results do
                                    not depend on it */
    int32_t reserved;            /* set to 0 */
    double soft_temperature;     /* soft, differentiable masks (PDP) when > 0, in the units of the
                                    squared scores (see below); 0 = hard masks (default 0). Not
                                    with decay_steps > 1, an NM selection or PK_CRITERION_RANDOM */
} pk_pruner_options;

/* Soft mode (soft_temperature T > 0). Before the schedule's end, pk_pruner_step writes no weight:
 * at every step it computes the step's hard mask (as in the hard mode, at the step's scheduled
 * sparsity) and, for each group of the selection (ROW: a row; LAYER: a layer; GLOBAL: every layer
 * together), t^2 = the midpoint between the largest squared score q the hard mask prunes and the
 * smallest it keeps; then for each weight
 *   m = 1 / (1 + exp(-(q - t^2) / T)),   dm/dw = m (1 - m) (dq/dw) / T      (float64, t held fixed)
 * with q = w^2 (MAGNITUDE; the m of pk_soft_mask), (|w| f_j)^2 (WANDA, STADE: f the feature values)
 * or e^2 (TAYLOR / gradient flow: e the moving score, dq/dw = 2 e (1 - momentum) |g| sign(w) with
 * the step's gradient g held fixed). Nothing pruned in a group: m = 1; everything: m = 0 (dm/dw 0).
 * The host reads them with pk_pruner_soft_mask, uses w * m(w) in its forward pass and
 * back-propagates through it (dL/dw = dL/dw' (m + w dm/dw)). At the first step >= the schedule's
 * end the masks are hardened: the hard mask at the final sparsity (exact count, pk_mask's) is
 * applied to the weights (pruned +0.0) as in the hard mode, and from then on m is that binary mask
 * and dm/dw = 0. pk_pruner_mask gives the step's hard mask (what hardening would choose now) and
 * pk_pruner_factors the soft mask. */

/* Fills *options with the defaults above (decay_steps 0, gradient_momentum 0.9, num_threads 0,
 * soft_temperature 0) and sets struct_size.
 * @param[out] options  the struct to fill.
 * @retval PK_OK, PK_ERROR_NULL_POINTER */
PK_API pk_status pk_pruner_options_init(pk_pruner_options *options);

/* Creates a pruner over layer_count layers. criteria: NULL (magnitude for every layer) or
 * layer_count pointers (NULL entries = magnitude); kinds MAGNITUDE, RANDOM, WANDA, STADE (their
 * feature values are copied) and TAYLOR (gradient flow; criterion->gradient is ignored, the
 * gradients come with each step). selection: ROW, LAYER or GLOBAL (its sparsity is replaced by the
 * schedule's), or NM with a one-shot schedule. layer_targets: NULL, or layer_count final
 * sparsities (not with GLOBAL). Writes *pruner_out only on success.
 * @param weights        layer_count matrices, the host's weights: THE POINTERS ARE KEPT (above).
 * @param layer_count    the number of layers, >= 1.
 * @param criteria       NULL or layer_count criteria (NULL entries: magnitude); read, not kept.
 * @param selection      the scope (its sparsity is ignored) and num_threads (the pruner's threads
 *                       when options->num_threads is 0).
 * @param schedule       the sparsity schedule (final_sparsity unless layer_targets).
 * @param layer_targets  NULL or layer_count final sparsities in [0, 1]; copied.
 * @param options        decay, gradient momentum, threads, soft mode; NULL is not allowed.
 * @param[out] pruner_out     receives the handle.
 * @retval PK_OK
 * @retval PK_ERROR_NULL_POINTER, PK_ERROR_STRUCT_SIZE, PK_ERROR_UNSUPPORTED_DTYPE
 * @retval PK_ERROR_INVALID_SHAPE layer_count <= 0, bad sizes, feature counts that differ from cols
 * @retval PK_ERROR_INVALID_ARGUMENT a schedule, target, option or criterion kind out of range
 * @retval PK_ERROR_OUT_OF_MEMORY */
PK_API pk_status pk_pruner_create(const pk_matrix *weights, int64_t layer_count,
                                  const pk_criterion *const *criteria, const pk_selection *selection,
                                  const pk_schedule *schedule, const double *layer_targets,
                                  const pk_pruner_options *options, pk_pruner **pruner_out);

/* Releases a pruner (the host's weights are left as they are). pk_pruner_free(NULL) is a no-op,
 * and so is a handle that is not live.
 * @param pruner  the handle, or NULL. */
PK_API void pk_pruner_free(pk_pruner *pruner);

/* Applies training step `step` (>= 0, not before the last step applied; the same step again
 * re-applies the masks). gradients: NULL, or layer_count matrices of the layers' shapes (required
 * by TAYLOR / gradient flow). Reads the gradients, keeps none. Every check runs before any weight
 * is written; on error the weights and the pruner are unchanged.
 * @param pruner     a live pruner handle.
 * @param step       the training step, >= 0 and >= the last step applied.
 * @param gradients  NULL or layer_count matrices (the step's gradients), read and not kept.
 * @retval PK_OK
 * @retval PK_ERROR_INVALID_ARGUMENT not a live handle, a step out of order, missing gradients
 * @retval the codes of pk_mask_layers for the weights and gradients */
PK_API pk_status pk_pruner_step(pk_pruner *pruner, int64_t step, const pk_matrix *gradients);

/* The current mask of layer `layer` (rows*cols bytes, 1 = kept; decaying and pruned are 0), and
 * the current factor of each weight (rows*cols floats: 1 kept, the decay factor at the last step,
 * 0 pruned; in soft mode the soft mask). length must be rows*cols.
 * @param pruner       a live pruner handle.
 * @param layer        the layer index, in [0, layer_count).
 * @param[out] mask_out     rows*cols bytes (pk_pruner_mask).
 * @param[out] factors_out  rows*cols floats (pk_pruner_factors).
 * @param length       rows*cols of the layer.
 * @retval PK_OK, PK_ERROR_NULL_POINTER
 * @retval PK_ERROR_INVALID_ARGUMENT not a live handle, layer out of range
 * @retval PK_ERROR_INVALID_SHAPE length */
PK_API pk_status pk_pruner_mask(const pk_pruner *pruner, int64_t layer, uint8_t *mask_out, int64_t length);
PK_API pk_status pk_pruner_factors(const pk_pruner *pruner, int64_t layer, float *factors_out, int64_t length);

/* The soft mask and its derivative dm/dw at the last step applied (soft mode; see above) of
 * layer `layer`: before any step m = 1 and dm/dw = 0; once hardened the binary mask and 0. A
 * pruner in hard mode gives its factors and 0.
 * @param pruner          a live pruner handle.
 * @param layer           the layer index, in [0, layer_count).
 * @param[out] mask_out        rows*cols floats (row-major, dense), receives m.
 * @param[out] derivative_out  rows*cols floats, receives dm/dw; may be NULL.
 * @param length          rows*cols of the layer (the length of each output).
 * @retval PK_OK
 * @retval PK_ERROR_NULL_POINTER mask_out
 * @retval PK_ERROR_INVALID_ARGUMENT not a live handle, layer out of range
 * @retval PK_ERROR_INVALID_SHAPE length
 * Writes nothing on error. */
PK_API pk_status pk_pruner_soft_mask(const pk_pruner *pruner, int64_t layer, float *mask_out, float *derivative_out,
                                     int64_t length);

/* The pruner's state (masks, schedule position, decay values and start steps, gradient-flow
 * scores) in the versioned, checksummed format of docs/pruner-format.md. It restores into a
 * pruner created with the same layers' shapes, criteria, selection, schedule, targets and options
 * (a digest of them is stored); the host restores its own weights.
 * @param pruner       a live pruner handle.
 * @param[out] size_out     receives the exact size of the state in bytes (pk_pruner_serialized_size).
 * @param[out] buffer  capacity bytes to write the state to (pk_pruner_serialize).
 * @param capacity     the size of buffer, >= the serialized size.
 * @param[out] written_out  receives the bytes written.
 * @retval as pk_stats_serialized_size / pk_stats_serialize */
PK_API pk_status pk_pruner_serialized_size(const pk_pruner *pruner, size_t *size_out);
PK_API pk_status pk_pruner_serialize(const pk_pruner *pruner, void *buffer, size_t capacity, size_t *written_out);

/* Replaces the state of `pruner` by bytes from pk_pruner_serialize. Does not write the weights.
 * On error the pruner is unchanged.
 * @param pruner  a live pruner handle.
 * @param buffer  the bytes, read and not kept.
 * @param size    their number.
 * @retval PK_OK, PK_ERROR_NULL_POINTER, PK_ERROR_INVALID_ARGUMENT (not a live handle)
 * @retval PK_ERROR_CORRUPT_DATA truncated, corrupted, foreign or unknown-version bytes, or bytes of
 *         a pruner of another configuration; the message says which */
PK_API pk_status pk_pruner_restore(pk_pruner *pruner, const void *buffer, size_t size);

/* Soft, differentiable mask (PDP). For each group (PK_SCOPE_ROW: a row; PK_SCOPE_LAYER: the
 * matrix) with floor(s * n) to prune, t^2 is the midpoint between the largest w^2 that pk_mask with
 * PK_CRITERION_MAGNITUDE prunes and the smallest it keeps, and
 *   m = 1 / (1 + exp(-(w^2 - t^2) / temperature)),  dm/dw = m (1 - m) 2 w / temperature
 * (float64, t held fixed); nothing pruned: m = 1, everything: m = 0, derivative 0. The host
 * applies w * m(w) in its forward pass; pk_mask with PK_CRITERION_MAGNITUDE and the same selection
 * hardens it (exact count; it keeps the entries of highest m). Writes mask_out and, if not NULL,
 * derivative_out only on success. Keeps nothing.
 * @param weights              the layer, any dtype.
 * @param selection            the scope (ROW, LAYER, GLOBAL = LAYER), sparsity and threads.
 * @param temperature          finite and > 0, in the units of w^2.
 * @param[out] mask_out        rows*cols floats, receives m.
 * @param[out] derivative_out  rows*cols floats, receives dm/dw; may be NULL.
 * @retval the codes of pk_mask; PK_ERROR_INVALID_ARGUMENT for a temperature that is not finite and
 *         > 0, or a scope other than ROW, LAYER, GLOBAL (= LAYER) */
PK_API pk_status pk_soft_mask(const pk_matrix *weights, const pk_selection *selection, double temperature,
                              float *mask_out, float *derivative_out);

/* Host callbacks. Called on the thread that called the library, one at a time, never after the
 * call returns. Return 0 to go on; any other value stops the loop with PK_ERROR_CANCELLED. The
 * pointers passed are valid only during the callback. */

/* The host's cost (lower is better, e.g. 1 - mean cosine) of its model with the tensors as they are
 * now; keep (structure_count bytes) is the selection being evaluated. */
typedef int (*pk_evaluate_fn)(void *user_data, const uint8_t *keep, int64_t structure_count, double *cost_out);

/* The damage (e.g. loss increase) of layer `layer` pruned alone at `ratio`. */
typedef int (*pk_sensitivity_fn)(void *user_data, int64_t layer, double ratio, double *damage_out);

/* Option struct: set struct_size (pk_progressive_options_init does). */
typedef struct pk_progressive_options {
    size_t struct_size;
    double target_ratio;   /* fraction of all structures to prune, [0, 1]; default 0.5 */
    double step_ratio;     /* structures per step: max(1, floor(step_ratio * total)), (0, 1]; 0.05 */
    double tolerance;      /* a step is accepted when its cost exceeds the dense cost by at most
                              this; finite; default 0.01 */
} pk_progressive_options;

/* Fills *options with the defaults above and sets struct_size.
 * @param[out] options  the struct to fill.
 * @retval PK_OK, PK_ERROR_NULL_POINTER */
PK_API pk_status pk_progressive_options_init(pk_progressive_options *options);

enum pk_progressive_stop {
    PK_PROGRESSIVE_STOP_REACHED_TARGET = 0,
    PK_PROGRESSIVE_STOP_NO_ACCEPTABLE_STEP = 1,   /* every structure left is protected or at
                                                     min_keep */
    /* Earlier names, same values: */
    PK_PROGRESSIVE_REACHED_TARGET = PK_PROGRESSIVE_STOP_REACHED_TARGET,
    PK_PROGRESSIVE_NO_ACCEPTABLE_STEP = PK_PROGRESSIVE_STOP_NO_ACCEPTABLE_STEP
};

/* What a progressive loop did. This struct is frozen. */
typedef struct pk_progressive_result {
    int64_t pruned;          /* structures pruned */
    int64_t evaluations;     /* callback calls, the dense one included */
    int64_t accepted;        /* steps kept */
    int64_t rejected;        /* steps rolled back */
    int32_t stop;            /* enum pk_progressive_stop */
    int32_t reserved;
    double baseline_cost;    /* the dense model's cost */
    double final_cost;       /* the cost after the last accepted step */
} pk_progressive_result;

/* Progressive structured pruning (C-SWAP style, no fine-tuning) over the groups of
 * pk_select_structures. Structures are scored once (scoring's criterion, reduction and
 * normalization, or scoring->scores; its mode, ratio and multiple are ignored) and ranked by
 * (score, group, index) ascending. evaluate is asked the dense cost first, then after each step:
 * a step removes the next max(1, floor(step_ratio * total)) structures that are kept, not
 * protected and above their group's min_keep (fewer near the target), setting them to +0.0 in
 * the members (pk_apply_structures). A step costing more than the dense cost + tolerance is
 * rolled back (the members as before the step) and its structures are protected. Ends at
 * floor(target_ratio * total) pruned or when no candidate is left. The members are written during
 * the call (the callback sees them); the outputs are written only on success.
 * @param[in,out] groups      group_count groups; their members' tensors are written.
 * @param group_count         > 0.
 * @param scoring             how structures are scored, as for pk_select_structures.
 * @param options             target, step and tolerance (struct_size set).
 * @param evaluate            the host's cost of the model as it is now.
 * @param user_data           passed to evaluate unchanged.
 * @param[out] keep_out       one byte per structure, 1 = kept.
 * @param[out] protected_out  one byte per structure, 1 = protected (a rejected step's); may be
 *                            NULL.
 * @param[out] result_out     what the loop did; may be NULL.
 * @retval PK_OK
 * @retval the codes of pk_select_structures; PK_ERROR_NULL_POINTER (evaluate, keep_out)
 * @retval PK_ERROR_INVALID_ARGUMENT options out of range
 * @retval PK_ERROR_CANCELLED evaluate returned non-zero
 * @retval PK_ERROR_NON_FINITE evaluate gave a cost that is not finite
 * On any error every member is as it was before the call and no output is written. */
PK_API pk_status pk_progressive_structures(const pk_group *groups, int64_t group_count,
                                           const pk_structure_options *scoring,
                                           const pk_progressive_options *options, pk_evaluate_fn evaluate,
                                           void *user_data, uint8_t *keep_out, uint8_t *protected_out,
                                           pk_progressive_result *result_out);

/* Sensitivity-based per-layer ratios (SBPF). evaluate is asked the damage of each layer (layer by
 * layer, probes in order) at each of probe_count increasing probe ratios in (0, 1]; the damage at
 * ratio 0 is 0. Layer l's curve is piecewise linear in pruned weights through (0, 0) and
 * (floor(r_j * n_l), damage); pruned counts are allocated greedily, the cheapest next segment
 * (damage per weight; ties by layer) first, so that they sum to exactly floor(target * sum n_l).
 * Writes the outputs only on success. The library touches no weights.
 * @param layer_sizes      layer_count entries: each layer's number of weights n_l, > 0.
 * @param layer_count      > 0.
 * @param probe_ratios     probe_count ratios, increasing, in (0, 1].
 * @param probe_count      > 0.
 * @param target           the overall fraction pruned, in [0, 1].
 * @param evaluate         the damage of one layer pruned alone at one ratio.
 * @param user_data        passed to evaluate unchanged.
 * @param[out] ratios_out  layer_count ratios: the smallest double r with floor(r * n_l) equal to
 *                         the layer's count.
 * @param[out] counts_out  layer_count pruned counts; may be NULL.
 * @retval PK_OK, PK_ERROR_NULL_POINTER
 * @retval PK_ERROR_INVALID_SHAPE layer_count or probe_count <= 0, a layer size <= 0
 * @retval PK_ERROR_INVALID_ARGUMENT probes not increasing in (0, 1], a target outside [0, 1] or
 *         above what the largest probe allows
 * @retval PK_ERROR_CANCELLED evaluate returned non-zero
 * @retval PK_ERROR_NON_FINITE a damage that is not finite */
PK_API pk_status pk_sensitivity_ratios(const int64_t *layer_sizes, int64_t layer_count, const double *probe_ratios,
                                       int64_t probe_count, double target, pk_sensitivity_fn evaluate,
                                       void *user_data, double *ratios_out, int64_t *counts_out);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* PRUNEKIT_H */
