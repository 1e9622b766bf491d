/* Hostile-input regression tests of libprunekit (POSIX: guard pages through mmap). Compiled as C99
 * and as C++17. Ends with "N passed, N failed". Each case here failed, crashed or read out of
 * bounds before its fix. */
#define _DEFAULT_SOURCE
#include <prunekit.h>

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "check.h"

/* `bytes` of readable memory that end exactly at an inaccessible page: a read past the end
 * faults instead of returning whatever the heap holds next. */
static void *guarded(size_t bytes, void **mapping, size_t *mapped) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t data_pages = (bytes + page - 1) / page;
    *mapped = (data_pages + 1) * page;
    char *base = (char *)mmap(NULL, *mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == (char *)MAP_FAILED) return NULL;
    mprotect(base + data_pages * page, page, PROT_NONE);
    *mapping = base;
    return base + data_pages * page - bytes;
}

/* A middle row offset above nnz: the offsets are all checked before any column is read, so the
 * one-entry columns buffer is never read past (it used to be read up to offset 2). */
static void test_csr_offsets_checked_before_columns(void) {
    void *map_c, *map_v;
    size_t size_c, size_v;
    int64_t *columns = (int64_t *)guarded(sizeof(int64_t), &map_c, &size_c);
    float *values = (float *)guarded(sizeof(float), &map_v, &size_v);
    CHECK(columns != NULL && values != NULL, "mmap failed");
    if (!columns || !values) return;
    columns[0] = 0;
    values[0] = 1.0f;
    int64_t offsets[3] = {0, 2, 1};
    float dense[8];
    memset(dense, 0xAB, sizeof dense);
    pk_matrix out = {dense, 2, 4, 4, PK_DTYPE_FLOAT32, 0};
    pk_status status = pk_import_csr(offsets, columns, values, &out);
    CHECK(status == PK_ERROR_CORRUPT_DATA, "got %s (%s)", pk_status_string(status), pk_last_error());
    CHECK(strstr(pk_last_error(), "decrease at row 1") != NULL, "message: %s", pk_last_error());
    int untouched = 1;
    for (size_t i = 0; i < sizeof dense; i++) untouched &= ((unsigned char *)dense)[i] == 0xAB;
    CHECK(untouched, "dense output written on error");
    /* The last offset is nnz: a well-formed matrix whose data ends at the guard page imports. */
    int64_t good[3] = {0, 1, 1};
    CHECK(pk_import_csr(good, columns, values, &out) == PK_OK && dense[0] == 1.0f && dense[1] == 0.0f,
          "%s", pk_last_error());
    munmap(map_c, size_c);
    munmap(map_v, size_v);
}

/* A freed handle stays an error after its memory is reused: the next accumulator is created
 * right after the free (the allocator used to hand back the same address, every time), and a
 * call through the old handle must neither succeed nor touch the new accumulator. Forged values
 * (a small integer, a stack address, the new handle plus one) are refused too. */
static void test_stale_and_forged_handles(void) {
    float ones[4] = {1, 1, 1, 1};
    pk_matrix batch = {ones, 1, 4, 4, PK_DTYPE_FLOAT32, 0};
    int aliased = 0;
    for (int trial = 0; trial < 100; trial++) {
        pk_stats *old = NULL, *fresh = NULL;
        if (pk_stats_create(4, &old) != PK_OK) { CHECK(0, "create: %s", pk_last_error()); return; }
        pk_stats_free(old);
        if (pk_stats_create(4, &fresh) != PK_OK) { CHECK(0, "create: %s", pk_last_error()); return; }
        int64_t count = -1;
        pk_status through_old = pk_stats_update(old, &batch);
        pk_status count_old = pk_stats_count(old, &count);
        pk_stats_free(old); /* a stale free is a no-op: it must not release the new one */
        int64_t fresh_count = -1;
        pk_status fresh_status = pk_stats_count(fresh, &fresh_count);
        if (through_old != PK_ERROR_INVALID_ARGUMENT || count_old != PK_ERROR_INVALID_ARGUMENT || count != -1 ||
            fresh_status != PK_OK || fresh_count != 0)
            aliased++;
        pk_stats_free(fresh);
    }
    CHECK(aliased == 0, "%d of 100 stale handles reached the next accumulator", aliased);
    pk_stats *live = NULL;
    CHECK(pk_stats_create(4, &live) == PK_OK, "%s", pk_last_error());
    int on_stack = 0;
    pk_stats *forged[3] = {(pk_stats *)(uintptr_t)1, (pk_stats *)(void *)&on_stack, (pk_stats *)((uintptr_t)live + 1)};
    for (int i = 0; i < 3; i++) {
        int64_t features = -1;
        pk_status status = pk_stats_features(forged[i], &features);
        CHECK(status == PK_ERROR_INVALID_ARGUMENT && features == -1, "forged handle %d: %s", i, pk_status_string(status));
        CHECK(strstr(pk_last_error(), "not a live pk_stats handle") != NULL, "message: %s", pk_last_error());
        pk_stats_free(forged[i]);
    }
    int64_t features = 0;
    CHECK(pk_stats_features(live, &features) == PK_OK && features == 4, "the live handle after forged frees: %s",
          pk_last_error());
    pk_stats_free(live);
}

/* Bits of a float as float16 (round to nearest even; normal range only) and as bfloat16. */
static uint16_t half_bits(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000, mantissa = x & 0x7FFFFF;
    int exponent = (int)((x >> 23) & 0xFF) - 127 + 15;
    uint32_t h = sign | (uint32_t)exponent << 10 | mantissa >> 13;
    uint32_t rest = mantissa & 0x1FFF;
    if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) h++;
    return (uint16_t)h;
}

static uint16_t bfloat_bits(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    return (uint16_t)((x + 0x7FFF + ((x >> 16) & 1)) >> 16);
}

/* Two nearly collinear inputs: removing either weight moves almost all of it onto the other, and
 * the sum leaves the output dtype's range (float16: 30000 + 60000; bfloat16 in float64
 * arithmetic: 2e38 + 3e38). SparseGPT, reconstruct and prune_columns must report
 * PK_ERROR_NUMERIC and write nothing, in place or not (they used to write Inf and return PK_OK). */
static void test_overflow_of_the_output_dtype(void) {
    double hessian[4] = {1.0, 0.999, 0.999, 1.0};
    uint8_t mask_given[2] = {0, 1}, keep_columns[2] = {1, 0};
    for (int type = 0; type < 2; type++) {
        int bf = type == 1;
        uint16_t original[2];
        original[0] = bf ? bfloat_bits(2e38f) : half_bits(30000.0f);
        original[1] = bf ? bfloat_bits(3e38f) : half_bits(60000.0f);
        int32_t dtype = bf ? PK_DTYPE_BFLOAT16 : PK_DTYPE_FLOAT16;
        pk_reconstruction_options options;
        pk_reconstruction_options_init(&options);
        options.precision = bf ? PK_PRECISION_FLOAT64 : PK_PRECISION_FLOAT32;
        for (int op = 0; op < 3; op++) {
            for (int in_place = 0; in_place < 2; in_place++) {
                uint16_t weights[2] = {original[0], original[1]}, out[2] = {0xABCD, 0xABCD};
                uint8_t mask[2] = {7, 7};
                pk_matrix w = {weights, 1, 2, 2, dtype, 0};
                pk_matrix o = {in_place ? (void *)weights : (void *)out, 1, 2, 2, dtype, 0};
                pk_status status = op == 0 ? pk_sparsegpt(&w, hessian, 2, &options, mask, &o)
                                 : op == 1 ? pk_reconstruct(&w, hessian, 2, mask_given, &options, &o)
                                           : pk_prune_columns(&w, hessian, 2, keep_columns, &options, &o);
                CHECK(status == PK_ERROR_NUMERIC, "%s op %d in place %d: got %s (%s)", bf ? "bfloat16" : "float16", op,
                      in_place, pk_status_string(status), pk_last_error());
                CHECK(strstr(pk_last_error(), bf ? "overflows the output's bfloat16" : "overflows the output's float16"),
                      "message: %s", pk_last_error());
                CHECK(weights[0] == original[0] && weights[1] == original[1] && out[0] == 0xABCD && out[1] == 0xABCD &&
                      mask[0] == 7 && mask[1] == 7, "%s op %d in place %d: written on error", bf ? "bfloat16" : "float16", op,
                      in_place);
            }
        }
    }
}

/* Found by fuzz_options: a block size far above the layer's width sized the scratch buffers by
 * the block (17 GB for block_size near INT32_MAX on a 4 x 8 layer). A block wider than the layer
 * is the whole layer: the same result as block_size = cols. */
static void test_huge_block_size(void) {
    float w[4 * 8], out_huge[4 * 8], out_cols[4 * 8];
    double h[8 * 8];
    for (int i = 0; i < 32; i++) w[i] = (float)((i * 7919) % 23) - 11.0f;
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < 8; j++) h[i * 8 + j] = i == j ? 4.0 + i : 1.0 / (1 + i + j);
    pk_matrix weights = {w, 4, 8, 8, PK_DTYPE_FLOAT32, 0};
    pk_matrix a = {out_huge, 4, 8, 8, PK_DTYPE_FLOAT32, 0}, b = {out_cols, 4, 8, 8, PK_DTYPE_FLOAT32, 0};
    uint8_t mask_huge[32], mask_cols[32];
    pk_reconstruction_options options;
    pk_reconstruction_options_init(&options);
    options.block_size = 2147483644; /* a multiple of 4, so 2:4 accepts it too */
    for (int nm = 0; nm < 2; nm++) {
        options.scope = nm ? PK_SCOPE_NM : PK_SCOPE_LAYER;
        options.block_size = 2147483644;
        pk_status status = pk_sparsegpt(&weights, h, 8, &options, mask_huge, &a);
        CHECK(status == PK_OK, "block_size near INT32_MAX: %s (%s)", pk_status_string(status), pk_last_error());
        options.block_size = 8;
        CHECK(pk_sparsegpt(&weights, h, 8, &options, mask_cols, &b) == PK_OK, "%s", pk_last_error());
        CHECK(memcmp(mask_huge, mask_cols, sizeof mask_huge) == 0 && memcmp(out_huge, out_cols, sizeof out_huge) == 0,
              "a block wider than the layer differs from one block of the layer (%s)", nm ? "2:4" : "unstructured");
    }
}

int main(void) {
    test_csr_offsets_checked_before_columns();
    test_stale_and_forged_handles();
    test_overflow_of_the_output_dtype();
    test_huge_block_size();
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
