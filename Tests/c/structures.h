/* Structured pruning tests against the header: the golden selections of Tests/vectors/structures
 * (see Tests/vectors/structures_reference.py), compaction, and bad input (status, message,
 * nothing written). Included by test_prunekit.c after its CHECK macros. Plain C99 and C++17. */
#ifndef PRUNEKIT_TEST_STRUCTURES_H
#define PRUNEKIT_TEST_STRUCTURES_H

#define ST_MAX_GROUPS 8
#define ST_MAX_MEMBERS 8

typedef struct st_case {
    char name[128];
    pk_structure_options options;
    double stages[8];
    int64_t group_count;
    pk_group groups[ST_MAX_GROUPS];
    pk_group_member members[ST_MAX_GROUPS][ST_MAX_MEMBERS];
    int64_t total;
    uint8_t *keep;
    double *scores;
} st_case;

/* Parses one line of cases.txt and loads its files; returns 0 on failure. */
static int st_load(const char *folder, char *line, st_case *c) {
    memset(c, 0, sizeof *c);
    pk_structure_options_init(&c->options);
    int64_t group = -1, member = 0;
    for (char *token = strtok(line, " \n"); token; token = strtok(NULL, " \n")) {
        char *value = strchr(token, '=');
        if (!value) return 0;
        *value++ = '\0';
        if (!strcmp(token, "name")) snprintf(c->name, sizeof c->name, "%s", value);
        else if (!strcmp(token, "criterion")) c->options.criterion = atoi(value);
        else if (!strcmp(token, "reduction")) c->options.reduction = atoi(value);
        else if (!strcmp(token, "normalization")) c->options.normalization = atoi(value);
        else if (!strcmp(token, "mode")) c->options.mode = atoi(value);
        else if (!strcmp(token, "ratio")) c->options.ratio = strtod(value, NULL);
        else if (!strcmp(token, "multiple")) c->options.multiple = atoll(value);
        else if (!strcmp(token, "stages")) {
            if (strcmp(value, "-") != 0) {
                int64_t n = 0;
                for (char *p = value; *p && n < 8; n++) {
                    c->stages[n] = strtod(p, &p);
                    if (*p == ',') p++;
                }
                c->options.stage_values = c->stages;
                c->options.stage_count = n;
            }
        } else if (!strcmp(token, "groups")) c->group_count = atoll(value);
        else if (!strcmp(token, "group")) {
            if (++group >= ST_MAX_GROUPS) return 0;
            long long min_keep, stage, count;
            if (sscanf(value, "%lld,%lld,%lld", &min_keep, &stage, &count) != 3) return 0;
            c->groups[group].members = c->members[group];
            c->groups[group].member_count = count;
            c->groups[group].min_keep = min_keep;
            c->groups[group].stage = (int32_t)stage;
            member = 0;
        } else if (!strcmp(token, "member")) {
            long long rows, cols, axis, span, block_cols, scored;
            if (group < 0 || member >= ST_MAX_MEMBERS ||
                sscanf(value, "%lld,%lld,%lld,%lld,%lld,%lld", &rows, &cols, &axis, &span, &block_cols, &scored) != 6)
                return 0;
            pk_group_member *m = &c->members[group][member];
            char suffix[64];
            snprintf(suffix, sizeof suffix, "g%lld.m%lld.bin", (long long)group, (long long)member);
            m->tensor.data = vec_read((size_t)(rows * cols) * 4, "%s/structures/%s.%s", folder, c->name, suffix);
            if (!m->tensor.data) return 0;
            m->tensor.rows = rows;
            m->tensor.cols = cols;
            m->tensor.row_stride = cols;
            m->tensor.dtype = PK_DTYPE_FLOAT32;
            m->axis = (int32_t)axis;
            m->span = span;
            m->block_cols = block_cols;
            m->scored = (int32_t)scored;
            member++;
        }
    }
    if (group + 1 != c->group_count) return 0;
    for (int64_t g = 0; g < c->group_count; g++) {
        int64_t n = 0;
        if (pk_group_layout(&c->groups[g], 0, &n, NULL) != PK_OK) return 0;
        c->total += n;
    }
    c->keep = (uint8_t *)vec_read((size_t)c->total, "%s/structures/%s.keep.bin", folder, c->name);
    c->scores = (double *)vec_read((size_t)c->total * 8, "%s/structures/%s.scores.bin", folder, c->name);
    return c->keep && c->scores;
}

static void st_free(st_case *c) {
    for (int g = 0; g < ST_MAX_GROUPS; g++)
        for (int m = 0; m < ST_MAX_MEMBERS; m++) free(c->members[g][m].tensor.data);
    free(c->keep);
    free(c->scores);
}

static void test_structure_vectors(const char *folder) {
    char line[8192];
    FILE *f = vec_manifest(folder, "structures/cases.txt");
    if (!f) return;
    int cases = 0;
    while (fgets(line, sizeof line, f)) {
        st_case *c = (st_case *)calloc(1, sizeof(st_case));
        if (!c || !st_load(folder, line, c)) {
            CHECK(0, "cannot load structure case %s", c ? c->name : "?");
            if (c) st_free(c);
            free(c);
            continue;
        }
        for (int32_t threads = 1; threads <= 3; threads += 2) {
            uint8_t *keep = (uint8_t *)malloc((size_t)c->total);
            double *scores = (double *)malloc((size_t)c->total * 8);
            c->options.num_threads = threads;
            pk_status status = pk_select_structures(c->groups, c->group_count, &c->options, keep, scores);
            CHECK(status == PK_OK, "%s: %s", c->name, pk_last_error());
            if (status == PK_OK) {
                CHECK(memcmp(keep, c->keep, (size_t)c->total) == 0, "%s (threads %d): selection differs from the reference",
                      c->name, threads);
                CHECK(memcmp(scores, c->scores, (size_t)c->total * 8) == 0, "%s (threads %d): scores differ from the reference",
                      c->name, threads);
            }
            free(keep);
            free(scores);
        }
        cases++;
        st_free(c);
        free(c);
    }
    fclose(f);
    CHECK(cases >= 25, "only %d structure cases", cases);
}

/* pk_group_layout on spans and blocks, and its errors (status, message, nothing written). The
 * group is the MLP below (w1 rows, b1 and w2 columns, 6 structures each), changed and restored. */
static void test_group_layout(pk_group *group, pk_group_member *members) {
    int64_t n = -1, shapes[6] = {-1, -1, -1, -1, -1, -1};
    CHECK(pk_group_layout(group, 6, &n, shapes) == PK_OK, "%s", pk_last_error());
    CHECK(n == 6 && shapes[0] == 6 && shapes[1] == 4 && shapes[3] == 6 && shapes[4] == 3 && shapes[5] == 6, "kept 6");
    CHECK(pk_group_layout(group, 0, &n, shapes) == PK_OK && shapes[0] == 0 && shapes[5] == 0, "kept 0");
    /* Spans of 2 (pairs of rows and columns): 3 structures, kept * span elements. */
    for (int m = 0; m < 3; m++) members[m].span = 2;
    CHECK(pk_group_layout(group, 2, &n, shapes) == PK_OK, "%s", pk_last_error());
    CHECK(n == 3 && shapes[0] == 4 && shapes[1] == 4 && shapes[2] == 1 && shapes[3] == 4 && shapes[4] == 3 && shapes[5] == 4,
          "span 2: %lld structures, %lld x %lld", (long long)n, (long long)shapes[0], (long long)shapes[1]);
    for (int m = 0; m < 3; m++) members[m].span = 1;
    /* Blocks of 4 x 3 over w1 (6 x 4): ceil(6/4) * ceil(4/3) = 4 structures; counted, never compacted. */
    pk_group_member block = members[0];
    block.axis = PK_AXIS_BLOCKS;
    block.span = 4;
    block.block_cols = 3;
    pk_group blocks = *group;
    blocks.members = &block;
    blocks.member_count = 1;
    CHECK(pk_group_layout(&blocks, 0, &n, NULL) == PK_OK && n == 4, "blocks: %lld structures", (long long)n);
    int64_t untouched[6] = {-7, -7, -7, -7, -7, -7}, count = -7;
    CHECK_STATUS(pk_group_layout(&blocks, 1, &count, untouched), PK_ERROR_INVALID_ARGUMENT, "blocks cannot be compacted");
    CHECK_STATUS(pk_group_layout(group, 7, &count, untouched), PK_ERROR_INVALID_ARGUMENT, "outside 0 ... 6");
    CHECK_STATUS(pk_group_layout(group, -1, &count, untouched), PK_ERROR_INVALID_ARGUMENT, "outside 0 ... 6");
    CHECK_STATUS(pk_group_layout(group, 1, NULL, untouched), PK_ERROR_NULL_POINTER, "structure_count_out");
    CHECK_STATUS(pk_group_layout(NULL, 1, &count, untouched), PK_ERROR_NULL_POINTER, "group");
    members[0].span = 4;
    CHECK_STATUS(pk_group_layout(group, 1, &count, untouched), PK_ERROR_INVALID_SHAPE, "whole number");
    members[0].span = 0;
    CHECK_STATUS(pk_group_layout(group, 1, &count, untouched), PK_ERROR_INVALID_ARGUMENT, "span must be positive");
    members[0].span = 2;
    CHECK_STATUS(pk_group_layout(group, 1, &count, untouched), PK_ERROR_INVALID_SHAPE, "disagree");
    members[0].span = 1;
    int written = count != -7;
    for (int i = 0; i < 6; i++) written |= untouched[i] != -7;
    CHECK(!written, "outputs written on error");
}

/* An MLP's hidden channels: w1 [6 x 4] rows, b1 [1 x 6] cols, w2 [3 x 6] cols. */
static void test_structure_compaction_and_errors(void) {
    float w1[24], b1[6], w2[18], w2_wrong[15];
    for (int i = 0; i < 24; i++) w1[i] = (float)((i * 7) % 11) - 5.0f;
    for (int i = 0; i < 6; i++) b1[i] = (float)i;
    for (int i = 0; i < 18; i++) w2[i] = (float)((i * 5) % 7) - 3.0f;
    for (int i = 0; i < 15; i++) w2_wrong[i] = 1.0f;
    pk_group_member members[3];
    memset(members, 0, sizeof members);
    pk_matrix t1 = {w1, 6, 4, 4, PK_DTYPE_FLOAT32, 0}, tb = {b1, 1, 6, 6, PK_DTYPE_FLOAT32, 0},
              t2 = {w2, 3, 6, 6, PK_DTYPE_FLOAT32, 0};
    members[0].tensor = t1;
    members[0].axis = PK_AXIS_ROWS;
    members[0].span = 1;
    members[0].scored = 1;
    members[1].tensor = tb;
    members[1].axis = PK_AXIS_COLS;
    members[1].span = 1;
    members[2].tensor = t2;
    members[2].axis = PK_AXIS_COLS;
    members[2].span = 1;
    members[2].scored = 1;
    pk_group group;
    memset(&group, 0, sizeof group);
    group.members = members;
    group.member_count = 3;
    pk_structure_options o;
    pk_structure_options_init(&o);
    uint8_t keep[6];
    CHECK(pk_select_structures(&group, 1, &o, keep, NULL) == PK_OK, "%s", pk_last_error());
    int kept = 0;
    for (int i = 0; i < 6; i++) kept += keep[i];
    CHECK(kept == 3, "kept %d of 6", kept);

    /* The outputs' shapes come from the library's layout of the group. */
    int64_t structures = -1, shapes[6] = {0};
    CHECK(pk_group_layout(&group, kept, &structures, shapes) == PK_OK, "%s", pk_last_error());
    CHECK(structures == 6, "the group has %lld structures", (long long)structures);
    CHECK(shapes[0] == 3 && shapes[1] == 4 && shapes[2] == 1 && shapes[3] == 3 && shapes[4] == 3 && shapes[5] == 3,
          "compacted shapes %lld x %lld, %lld x %lld, %lld x %lld", (long long)shapes[0], (long long)shapes[1],
          (long long)shapes[2], (long long)shapes[3], (long long)shapes[4], (long long)shapes[5]);
    float o1[12], ob[3], o2[9];
    pk_matrix outs[3] = {{o1, shapes[0], shapes[1], shapes[1], PK_DTYPE_FLOAT32, 0},
                         {ob, shapes[2], shapes[3], shapes[3], PK_DTYPE_FLOAT32, 0},
                         {o2, shapes[4], shapes[5], shapes[5], PK_DTYPE_FLOAT32, 0}};
    int64_t indices[3];
    CHECK(pk_compact_group(&group, keep, NULL, outs, indices) == PK_OK, "%s", pk_last_error());
    for (int k = 0; k < 3; k++) {
        int64_t i = indices[k];
        CHECK(i >= 0 && i < 6 && keep[i] == 1 && (k == 0 || indices[k - 1] < i), "kept index %lld", (long long)i);
        CHECK(memcmp(o1 + 4 * k, w1 + 4 * i, 16) == 0 && ob[k] == b1[i], "row %lld compacted", (long long)i);
        for (int r = 0; r < 3; r++) CHECK(o2[r * 3 + k] == w2[r * 6 + i], "column %lld compacted", (long long)i);
    }

    /* Bad input: each gives its status and message and writes nothing. */
    uint8_t untouched[6];
    memset(untouched, 0xAB, sizeof untouched);
    members[2].tensor.data = w2_wrong;
    members[2].tensor.cols = 5;
    members[2].tensor.row_stride = 5;
    CHECK_STATUS(pk_select_structures(&group, 1, &o, untouched, NULL), PK_ERROR_INVALID_SHAPE, "disagree");
    members[2].tensor = t2;
    members[2].axis = 7;
    CHECK_STATUS(pk_select_structures(&group, 1, &o, untouched, NULL), PK_ERROR_INVALID_ARGUMENT, "not a pk_axis");
    members[2].axis = PK_AXIS_COLS;
    members[0].span = 4;
    CHECK_STATUS(pk_select_structures(&group, 1, &o, untouched, NULL), PK_ERROR_INVALID_SHAPE, "whole number");
    members[0].span = 1;
    group.min_keep = 4;
    CHECK_STATUS(pk_select_structures(&group, 1, &o, untouched, NULL), PK_ERROR_INVALID_ARGUMENT, "impossible");
    group.min_keep = 7;
    o.mode = PK_STRUCTURE_MODE_GLOBAL;
    CHECK_STATUS(pk_select_structures(&group, 1, &o, untouched, NULL), PK_ERROR_INVALID_ARGUMENT, "min_keep 7");
    group.min_keep = 0;
    o.ratio = 1.5;
    CHECK_STATUS(pk_select_structures(&group, 1, &o, untouched, NULL), PK_ERROR_INVALID_ARGUMENT, "[0, 1]");
    o.ratio = 0.5;
    o.mode = 9;
    CHECK_STATUS(pk_select_structures(&group, 1, &o, untouched, NULL), PK_ERROR_INVALID_ARGUMENT, "pk_structure_mode");
    o.mode = PK_STRUCTURE_MODE_PER_GROUP;
    o.struct_size = 8;
    CHECK_STATUS(pk_select_structures(&group, 1, &o, untouched, NULL), PK_ERROR_STRUCT_SIZE, "struct_size");
    pk_structure_options_init(&o);
    CHECK_STATUS(pk_select_structures(NULL, 1, &o, untouched, NULL), PK_ERROR_NULL_POINTER, "groups");
    CHECK_STATUS(pk_select_structures(&group, 0, &o, untouched, NULL), PK_ERROR_INVALID_SHAPE, "group_count");
    w1[5] = (float)NAN;
    CHECK_STATUS(pk_select_structures(&group, 1, &o, untouched, NULL), PK_ERROR_NON_FINITE, "row 1, column 1");
    w1[5] = 1.0f;
    CHECK(all_equal(untouched, 0xAB, sizeof untouched), "keep written on error");

    float small[8];
    for (int i = 0; i < 8; i++) small[i] = 9.0f;
    float before_o2[9];
    memcpy(before_o2, o2, sizeof o2);
    pk_matrix small_outs[3] = {{small, 2, 4, 4, PK_DTYPE_FLOAT32, 0}, outs[1], outs[2]};
    int64_t idx[3] = {-1, -1, -1};
    CHECK_STATUS(pk_compact_group(&group, keep, NULL, small_outs, idx), PK_ERROR_BUFFER_TOO_SMALL, "compacted member 0");
    pk_matrix overlapping[3] = {outs[0], outs[1], {w2, 3, 3, 6, PK_DTYPE_FLOAT32, 0}};
    CHECK_STATUS(pk_compact_group(&group, keep, NULL, overlapping, idx), PK_ERROR_INVALID_ARGUMENT, "overlaps member 2");
    pk_matrix wrong_dtype[3] = {outs[0], outs[1], {o2, 3, 3, 3, PK_DTYPE_FLOAT64, 0}};
    CHECK_STATUS(pk_compact_group(&group, keep, NULL, wrong_dtype, idx), PK_ERROR_UNSUPPORTED_DTYPE, "keeps the dtype");
    uint8_t bad_keep[6] = {1, 2, 0, 1, 0, 1};
    CHECK_STATUS(pk_compact_group(&group, bad_keep, NULL, outs, idx), PK_ERROR_INVALID_ARGUMENT, "only 0 and 1");
    CHECK_STATUS(pk_apply_structures(&group, bad_keep), PK_ERROR_INVALID_ARGUMENT, "only 0 and 1");
    pk_compensation comp = {0, NULL, 0, NULL};
    double hessian[36] = {0};
    for (int i = 0; i < 6; i++) hessian[i * 7] = 1.0;
    comp.hessian = hessian;
    comp.hessian_size = 6;
    CHECK_STATUS(pk_compact_group(&group, keep, &comp, outs, idx), PK_ERROR_INVALID_ARGUMENT, "not split along its columns");
    CHECK(small[0] == 9.0f && small[7] == 9.0f, "output written on error");
    CHECK(memcmp(before_o2, o2, sizeof o2) == 0 && idx[0] == -1, "outputs written on error");
    /* With an identity Hessian compensation changes nothing: the same compacted columns. */
    comp.member = 2;
    CHECK(pk_compact_group(&group, keep, &comp, outs, idx) == PK_OK, "%s", pk_last_error());
    CHECK(memcmp(before_o2, o2, sizeof o2) == 0, "identity-Hessian compensation changed the weights");

    /* In place: the pruned rows and columns become zero. */
    CHECK(pk_apply_structures(&group, keep) == PK_OK, "%s", pk_last_error());
    for (int i = 0; i < 6; i++) {
        if (keep[i]) continue;
        CHECK(w1[4 * i] == 0 && w1[4 * i + 3] == 0 && b1[i] == 0 && w2[i] == 0 && w2[12 + i] == 0, "structure %d zeroed", i);
    }
    uint8_t mask[18];
    CHECK(pk_structure_mask(&group, 2, keep, mask) == PK_OK, "%s", pk_last_error());
    for (int i = 0; i < 18; i++) CHECK(mask[i] == keep[i % 6], "mask entry %d", i);
    CHECK_STATUS(pk_structure_mask(&group, 3, keep, mask), PK_ERROR_INVALID_ARGUMENT, "outside");

    test_group_layout(&group, members);

    /* Key channels: one head of 4 channels; channel 2 has no key energy, so it goes first. */
    float q[8] = {1, 2, 3, 4, 1, 2, 3, 4}, k[8] = {1, 1, 0, 1, 2, 2, 0, 2};
    pk_matrix qm = {q, 2, 4, 4, PK_DTYPE_FLOAT32, 0}, km = {k, 2, 4, 4, PK_DTYPE_FLOAT32, 0};
    uint8_t kkeep[4];
    double kscores[4];
    CHECK(pk_key_channels(&qm, &km, 1, 0.25, kkeep, kscores) == PK_OK, "%s", pk_last_error());
    CHECK(kkeep[0] == 1 && kkeep[1] == 1 && kkeep[2] == 0 && kkeep[3] == 1, "key channel kept");
    CHECK(fabs(kscores[3] - sqrt(32.0) * sqrt(5.0)) < 1e-12, "key channel score %.17g", kscores[3]);
    CHECK_STATUS(pk_key_channels(&qm, &km, 3, 0.25, kkeep, kscores), PK_ERROR_INVALID_SHAPE, "heads");
}

#endif
