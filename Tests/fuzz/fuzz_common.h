/* Shared by the libFuzzer harnesses (Tests/fuzz/fuzz_TARGET.c): a reader over the fuzzer's bytes, and the
 * oracle every harness applies: a status is one of the header's codes, and a failed call leaves
 * its outputs exactly as they were. A violation aborts, so libFuzzer records the input. */
#ifndef PRUNEKIT_FUZZ_COMMON_H
#define PRUNEKIT_FUZZ_COMMON_H

#include <prunekit.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const uint8_t *data;
    size_t size, at;
} fuzz_bytes;

static inline uint64_t fuzz_u64(fuzz_bytes *b, int count) {
    uint64_t v = 0;
    for (int i = 0; i < count; i++) v |= (uint64_t)(b->at < b->size ? b->data[b->at++] : 0) << (8 * i);
    return v;
}

static inline uint8_t fuzz_u8(fuzz_bytes *b) { return (uint8_t)fuzz_u64(b, 1); }

/* An exactly sized heap copy of the next `bytes` bytes (zeros past the end), so that a read past
 * what the caller described is an AddressSanitizer report. */
static inline void *fuzz_take(fuzz_bytes *b, size_t bytes) {
    uint8_t *p = (uint8_t *)malloc(bytes ? bytes : 1);
    for (size_t i = 0; i < bytes; i++) p[i] = fuzz_u8(b);
    return p;
}

#define FUZZ_REQUIRE(cond, ...)                                                   \
    do {                                                                          \
        if (!(cond)) {                                                            \
            fprintf(stderr, "oracle violated at %s:%d: ", __FILE__, __LINE__);     \
            fprintf(stderr, __VA_ARGS__);                                         \
            fprintf(stderr, " (last error: %s)\n", pk_last_error());              \
            abort();                                                              \
        }                                                                         \
    } while (0)

static inline void fuzz_known_status(pk_status status) {
    FUZZ_REQUIRE(status >= PK_OK && status <= PK_ERROR_NUMERIC && status != PK_ERROR_INTERNAL, "status %d", (int)status);
    if (status != PK_OK) FUZZ_REQUIRE(pk_last_error()[0] != '\0', "a failure without a message");
}

static inline size_t fuzz_dtype_size(int32_t dtype) { return dtype == PK_DTYPE_FLOAT64 ? 8 : dtype == PK_DTYPE_FLOAT32 ? 4 : 2; }

#endif
