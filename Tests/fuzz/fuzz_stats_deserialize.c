/* libFuzzer target: pk_stats_deserialize on arbitrary bytes. An accepted accumulator must
 * serialize back to exactly the same bytes, answer every query with finite values, and take a
 * further update and a merge with itself without producing anything it would then refuse. */
#include "fuzz_common.h"

#include <math.h>

static void finite_or_die(const double *values, int64_t count, const char *what) {
    for (int64_t i = 0; i < count; i++) FUZZ_REQUIRE(isfinite(values[i]), "%s[%lld] = %g", what, (long long)i, values[i]);
}

/* Serializes, reads back, and requires the same bytes. */
static void round_trip(pk_stats *stats, const uint8_t *expected, size_t expected_size) {
    size_t size = 0, written = 0;
    FUZZ_REQUIRE(pk_stats_serialized_size(stats, &size) == PK_OK, "serialized_size");
    uint8_t *bytes = (uint8_t *)malloc(size);
    FUZZ_REQUIRE(pk_stats_serialize(stats, bytes, size, &written) == PK_OK && written == size, "serialize");
    if (expected) FUZZ_REQUIRE(size == expected_size && memcmp(bytes, expected, size) == 0, "bytes differ after a round trip");
    pk_stats *again = NULL;
    pk_status status = pk_stats_deserialize(bytes, size, &again);
    FUZZ_REQUIRE(status == PK_OK, "an accumulator's own bytes are refused");
    pk_stats_free(again);
    free(bytes);
}

/* FNV-1a 64 of every byte but the last 8, stored in the last 8 (the format's checksum). */
static void reseal(uint8_t *bytes, size_t size) {
    uint64_t hash = 0xCBF29CE484222325ull;
    for (size_t i = 0; i + 8 < size; i++) hash = (hash ^ bytes[i]) * 0x00000100000001B3ull;
    for (int i = 0; i < 8; i++) bytes[size - 8 + (size_t)i] = (uint8_t)(hash >> (8 * i));
}

static void one_input(const uint8_t *data, size_t size, int resealed);

/* Each input twice: as it is (the checksum rejects almost every mutation), and with its checksum
 * recomputed, as a hostile writer would, so the checks of the contents are reached too. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    one_input(data, size, 0);
    if (size >= 40) one_input(data, size, 1);
    return 0;
}

static void one_input(const uint8_t *data, size_t size, int resealed) {
    uint8_t *copy = (uint8_t *)malloc(size ? size : 1);
    if (size) memcpy(copy, data, size);
    if (resealed) reseal(copy, size);
    pk_stats *stats = NULL;
    pk_status status = pk_stats_deserialize(copy, size, &stats);
    fuzz_known_status(status);
    if (status != PK_OK) {
        FUZZ_REQUIRE(stats == NULL, "stats_out written on failure");
        free(copy);
        return;
    }
    int64_t features = 0, count = 0;
    FUZZ_REQUIRE(pk_stats_features(stats, &features) == PK_OK && features > 0, "features");
    FUZZ_REQUIRE(pk_stats_count(stats, &count) == PK_OK && count >= 0, "count");
    round_trip(stats, copy, size);
    double *out = (double *)malloc((size_t)features * sizeof(double));
    pk_status (*getters[6])(const pk_stats *, double *, int64_t) = {pk_stats_l2_norm, pk_stats_mean, pk_stats_variance,
                                                                   pk_stats_std, pk_stats_mean_abs, pk_stats_zero_fraction};
    for (int g = 0; g < 6; g++) {
        pk_status s = getters[g](stats, out, features);
        fuzz_known_status(s);
        if (s == PK_OK) finite_or_die(out, features, "per-feature result");
    }
    if (features <= 64) {
        double *gram = (double *)malloc((size_t)(features * features) * sizeof(double));
        if (pk_stats_gram(stats, gram, features * features) == PK_OK) finite_or_die(gram, features * features, "gram");
        free(gram);
    }
    /* One more token of ones, then a merge with itself: refused or fine, never unserializable. */
    for (int64_t j = 0; j < features; j++) out[j] = 1.0;
    pk_matrix batch = {out, 1, features, features, PK_DTYPE_FLOAT64, 0};
    fuzz_known_status(pk_stats_update(stats, &batch));
    fuzz_known_status(pk_stats_merge(stats, stats));
    round_trip(stats, NULL, 0);
    free(out);
    pk_stats_free(stats);
    free(copy);
}
