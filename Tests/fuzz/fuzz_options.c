/* libFuzzer target: the option structs (pk_criterion, pk_selection, pk_reconstruction_options,
 * pk_structure_options) with random struct_size and fields. The struct starts from its _init
 * defaults; the fuzzer's bytes choose struct_size (the buffer has exactly that many bytes, at
 * least the size_t itself, so reading past what the caller declared is an AddressSanitizer
 * report) and overwrite bytes anywhere in it. Pointer fields are set to NULL or to exactly sized
 * buffers (a pointer the caller got wrong is the caller's crash, not PruneKit's). Calls on a
 * small fixed layer; outputs must be untouched on failure. */
#include "fuzz_common.h"

#include <stddef.h>

enum { ROWS = 4, COLS = 8 };

/* A buffer of the declared size holding `defaults` (known bytes) then the fuzzer's edits. */
static uint8_t *fuzz_struct(fuzz_bytes *b, const void *defaults, size_t known, size_t *declared_out) {
    uint8_t choice = fuzz_u8(b);
    size_t declared = choice < 128 ? known : choice < 192 ? known + (choice % 24) : (size_t)fuzz_u8(b);
    if (choice >= 250) declared = (size_t)fuzz_u64(b, 8) % 4096;
    size_t bytes = declared > sizeof(size_t) ? declared : sizeof(size_t);
    uint8_t *s = (uint8_t *)calloc(1, bytes);
    memcpy(s, defaults, known < bytes ? known : bytes);
    for (int edits = fuzz_u8(b) % 8; edits > 0; edits--) {
        size_t at = (size_t)fuzz_u8(b) % bytes;
        s[at] = fuzz_u8(b);
    }
    memcpy(s, &declared, sizeof(size_t));
    *declared_out = declared;
    return s;
}

static void set_pointer(uint8_t *s, size_t declared, size_t offset, const void *value) {
    if (offset + sizeof(void *) <= declared) memcpy(s + offset, &value, sizeof(void *));
}

static void get_field(const uint8_t *s, size_t declared, size_t offset, void *out, size_t size) {
    if (offset + size <= declared) memcpy(out, s + offset, size);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_bytes b = {data, size, 0};
    float weights[ROWS * COLS], out_w[ROWS * COLS], pristine_w[ROWS * COLS];
    for (int i = 0; i < ROWS * COLS; i++) weights[i] = (float)((i * 7919) % 23) - 11.0f;
    for (int i = 0; i < ROWS * COLS; i++) out_w[i] = pristine_w[i] = -1234.5f;
    uint8_t mask[ROWS * COLS], pristine_mask[ROWS * COLS];
    memset(mask, 0x5A, sizeof mask);
    memcpy(pristine_mask, mask, sizeof mask);
    pk_matrix w = {weights, ROWS, COLS, COLS, PK_DTYPE_FLOAT32, 0};
    pk_matrix ow = {out_w, ROWS, COLS, COLS, PK_DTYPE_FLOAT32, 0};
    pk_criterion magnitude;
    pk_criterion_init(&magnitude);
    pk_selection selection;
    pk_selection_init(&selection);
    size_t declared = 0;
    void *extra = NULL;
    pk_status status;
    int which = fuzz_u8(&b) % 4;
    if (which == 0) {
        pk_criterion defaults;
        pk_criterion_init(&defaults);
        uint8_t *s = fuzz_struct(&b, &defaults, sizeof defaults, &declared);
        int64_t count = 0;
        get_field(s, declared, offsetof(pk_criterion, feature_count), &count, sizeof count);
        int64_t n = count >= 0 && count <= 64 ? count : 0;
        float *features = (float *)fuzz_take(&b, (size_t)n * sizeof(float));
        extra = features;
        set_pointer(s, declared, offsetof(pk_criterion, feature_values), fuzz_u8(&b) & 1 ? (void *)features : NULL);
        if (count < 0 || count > 64) {
            int64_t clamped = n;
            if (offsetof(pk_criterion, feature_count) + sizeof clamped <= declared && (fuzz_u8(&b) & 1))
                memcpy(s + offsetof(pk_criterion, feature_count), &clamped, sizeof clamped);
        }
        uint8_t g = fuzz_u8(&b) % 3;
        set_pointer(s, declared, offsetof(pk_criterion, gradient), g == 0 ? NULL : g == 1 ? (void *)&w : (void *)&ow);
        status = pk_mask(&w, (const pk_criterion *)(void *)s, &selection, mask);
        fuzz_known_status(status);
        if (status == PK_OK) {
            float scores[ROWS * COLS];
            fuzz_known_status(pk_score(&w, (const pk_criterion *)(void *)s, scores));
        }
        free(s);
    } else if (which == 1) {
        uint8_t *s = fuzz_struct(&b, &selection, sizeof selection, &declared);
        status = pk_mask(&w, &magnitude, (const pk_selection *)(void *)s, mask);
        fuzz_known_status(status);
        free(s);
    } else if (which == 2) {
        pk_reconstruction_options defaults;
        pk_reconstruction_options_init(&defaults);
        uint8_t *s = fuzz_struct(&b, &defaults, sizeof defaults, &declared);
        double h[COLS * COLS];
        for (int i = 0; i < COLS; i++)
            for (int j = 0; j < COLS; j++) h[i * COLS + j] = i == j ? 4.0 + i : 1.0 / (1 + i + j);
        const pk_reconstruction_options *o = (const pk_reconstruction_options *)(void *)s;
        int op = fuzz_u8(&b) % 3;
        uint8_t keep[ROWS * COLS];
        for (int i = 0; i < ROWS * COLS; i++) keep[i] = (uint8_t)(i % 3 != 0);
        status = op == 0 ? pk_sparsegpt(&w, h, COLS, o, mask, &ow)
               : op == 1 ? pk_reconstruct(&w, h, COLS, keep, o, &ow)
                         : pk_prune_columns(&w, h, COLS, keep, o, &ow);
        fuzz_known_status(status);
        if (status != PK_OK) FUZZ_REQUIRE(memcmp(out_w, pristine_w, sizeof out_w) == 0, "weights_out written on failure");
        free(s);
    } else {
        pk_structure_options defaults;
        pk_structure_options_init(&defaults);
        uint8_t *s = fuzz_struct(&b, &defaults, sizeof defaults, &declared);
        int64_t stages = 0;
        get_field(s, declared, offsetof(pk_structure_options, stage_count), &stages, sizeof stages);
        int64_t n = stages >= 0 && stages <= 16 ? stages : 0;
        double *stage_values = (double *)fuzz_take(&b, (size_t)n * sizeof(double));
        double *scores = (double *)fuzz_take(&b, ROWS * sizeof(double));
        set_pointer(s, declared, offsetof(pk_structure_options, stage_values), fuzz_u8(&b) & 1 ? (void *)stage_values : NULL);
        set_pointer(s, declared, offsetof(pk_structure_options, scores), fuzz_u8(&b) & 1 ? (void *)scores : NULL);
        if ((stages < 0 || stages > 16) && offsetof(pk_structure_options, stage_count) + 8 <= declared && (fuzz_u8(&b) & 1))
            memcpy(s + offsetof(pk_structure_options, stage_count), &n, sizeof n);
        pk_group_member member;
        memset(&member, 0, sizeof member);
        member.tensor = w;
        member.axis = PK_AXIS_ROWS;
        member.scored = 1;
        member.span = 1;
        pk_group group;
        memset(&group, 0, sizeof group);
        group.members = &member;
        group.member_count = 1;
        group.min_keep = fuzz_u8(&b) % 6;
        group.stage = (int32_t)(fuzz_u8(&b) % 3);
        uint8_t keep[ROWS];
        double out_scores[ROWS];
        memset(keep, 0x5A, sizeof keep);
        status = pk_select_structures(&group, 1, (const pk_structure_options *)(void *)s, keep, out_scores);
        fuzz_known_status(status);
        if (status != PK_OK) for (int i = 0; i < ROWS; i++) FUZZ_REQUIRE(keep[i] == 0x5A, "keep_out written on failure");
        free(stage_values);
        free(scores);
        free(s);
    }
    if (status != PK_OK && which < 3) FUZZ_REQUIRE(memcmp(mask, pristine_mask, sizeof mask) == 0, "mask written on failure");
    free(extra);
    return 0;
}
