/* Pruning over time through the C ABI: pk_pruner handles (freed and forged handles, state round
 * trips, several threads on one handle) and the host callbacks (a scripted C-SWAP host, a callback
 * that stops the loop, a NaN cost). Compiled as C99 and as C++17. Ends with "N passed, N failed". */
#include <prunekit.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

enum { ROWS = 32, COLS = 64 };

static void fill(float *w, int n, unsigned seed) {
    for (int i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        w[i] = (float)((int)(seed >> 8) % 2001 - 1000) / 1000.0f;
    }
}

static pk_pruner *make(float *w, int64_t decay) {
    pk_matrix m = {w, ROWS, COLS, COLS, PK_DTYPE_FLOAT32, 0};
    pk_selection sel;
    pk_selection_init(&sel);
    pk_schedule s;
    pk_schedule_init(&s);
    s.kind = PK_SCHEDULE_CUBIC;
    s.begin = 0;
    s.end = 40;
    s.frequency = 1;
    s.final_sparsity = 0.9;
    pk_pruner_options o;
    pk_pruner_options_init(&o);
    o.decay_steps = decay;
    pk_pruner *p = NULL;
    pk_status st = pk_pruner_create(&m, 1, NULL, &sel, &s, NULL, &o, &p);
    CHECK(st == PK_OK && p, "pk_pruner_create: %s", pk_last_error());
    return p;
}

static void test_freed_and_forged_handles(void) {
    static float w[ROWS * COLS];
    fill(w, ROWS * COLS, 1);
    pk_pruner *p = make(w, 0);
    CHECK(pk_pruner_step(p, 3, NULL) == PK_OK, "step: %s", pk_last_error());
    pk_pruner_free(p);
    /* The next pruner may reuse any memory; the stale handle is still refused. */
    pk_pruner *q = make(w, 0);
    uint8_t mask[ROWS * COLS];
    CHECK(pk_pruner_step(p, 4, NULL) == PK_ERROR_INVALID_ARGUMENT, "stale step: %s", pk_last_error());
    CHECK(strstr(pk_last_error(), "not a live pk_pruner handle") != NULL, "message: %s", pk_last_error());
    CHECK(pk_pruner_mask(p, 0, mask, ROWS * COLS) == PK_ERROR_INVALID_ARGUMENT, "stale mask");
    CHECK(pk_pruner_mask(q, 0, mask, ROWS * COLS) == PK_OK, "live mask: %s", pk_last_error());
    pk_pruner *forged = (pk_pruner *)(uintptr_t)0x1234;
    CHECK(pk_pruner_step(forged, 0, NULL) == PK_ERROR_INVALID_ARGUMENT, "forged handle");
    /* A pk_stats handle is not a pk_pruner handle. */
    pk_stats *stats = NULL;
    pk_stats_create(4, &stats);
    CHECK(pk_pruner_step((pk_pruner *)(void *)stats, 0, NULL) == PK_ERROR_INVALID_ARGUMENT, "stats as pruner");
    pk_stats_free(stats);
    pk_pruner_free(p); /* a stale free is a no-op */
    pk_pruner_free(NULL);
    CHECK(pk_pruner_mask(q, 0, mask, ROWS * COLS) == PK_OK, "q survives stale frees: %s", pk_last_error());
    pk_pruner_free(q);
}

typedef struct worker {
    pk_pruner *pruner;
    int bad;
} worker;

static void *step_all(void *arg) {
    worker *wk = (worker *)arg;
    for (int64_t t = 0; t < 40; t++) {
        pk_status st = pk_pruner_step(wk->pruner, t, NULL);
        if (st != PK_OK && !(st == PK_ERROR_INVALID_ARGUMENT && strstr(pk_last_error(), "before the last step")))
            wk->bad++;
        size_t size = 0;
        if (pk_pruner_serialized_size(wk->pruner, &size) != PK_OK || size == 0) wk->bad++;
    }
    return NULL;
}

static void test_threads_on_one_handle_and_state_round_trip(void) {
    static float shared[ROWS * COLS], solo[ROWS * COLS];
    fill(shared, ROWS * COLS, 2);
    memcpy(solo, shared, sizeof(solo));
    pk_pruner *a = make(shared, 5), *b = make(solo, 5);
    pthread_t threads[4];
    worker workers[4];
    for (int i = 0; i < 4; i++) {
        workers[i].pruner = a;
        workers[i].bad = 0;
        pthread_create(&threads[i], NULL, step_all, &workers[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(threads[i], NULL);
        CHECK(workers[i].bad == 0, "thread %d saw %d unexpected results", i, workers[i].bad);
    }
    for (int64_t t = 0; t < 40; t++) pk_pruner_step(b, t, NULL);
    pk_pruner_step(a, 39, NULL);
    CHECK(memcmp(shared, solo, sizeof(solo)) == 0, "threads changed the result");
    /* Serialize, restore into a fresh pruner over a copy, and the next steps agree. */
    size_t size = 0, written = 0;
    CHECK(pk_pruner_serialized_size(b, &size) == PK_OK, "size");
    unsigned char *bytes = (unsigned char *)malloc(size);
    CHECK(pk_pruner_serialize(b, bytes, size - 1, &written) == PK_ERROR_BUFFER_TOO_SMALL, "capacity");
    CHECK(pk_pruner_serialize(b, bytes, size, &written) == PK_OK && written == size, "serialize");
    static float copy[ROWS * COLS];
    memcpy(copy, solo, sizeof(copy));
    pk_pruner *c = make(copy, 5);
    bytes[size / 2] ^= 1;
    CHECK(pk_pruner_restore(c, bytes, size) == PK_ERROR_CORRUPT_DATA, "corrupt: %s", pk_last_error());
    bytes[size / 2] ^= 1;
    CHECK(pk_pruner_restore(c, bytes, size) == PK_OK, "restore: %s", pk_last_error());
    for (int64_t t = 40; t < 46; t++) {
        pk_pruner_step(b, t, NULL);
        pk_pruner_step(c, t, NULL);
    }
    CHECK(memcmp(copy, solo, sizeof(copy)) == 0, "restored pruner differs");
    uint8_t m1[ROWS * COLS], m2[ROWS * COLS];
    pk_pruner_mask(b, 0, m1, ROWS * COLS);
    pk_pruner_mask(c, 0, m2, ROWS * COLS);
    int pruned = 0;
    for (int i = 0; i < ROWS * COLS; i++) pruned += m1[i] == 0;
    CHECK(memcmp(m1, m2, sizeof(m1)) == 0 && pruned == ROWS * (int)(COLS * 0.9), "masks: %d pruned", pruned);
    free(bytes);
    pk_pruner_free(a);
    pk_pruner_free(b);
    pk_pruner_free(c);
}

/* A scripted host: a fixed table of costs, and the selections it was asked about. */
typedef struct script {
    const double *costs;
    int count, calls, stop_at;
    uint8_t seen[8][8];
} script;

static int scripted(void *user_data, const uint8_t *keep, int64_t n, double *cost_out) {
    script *s = (script *)user_data;
    if (s->calls < 8 && n == 8) memcpy(s->seen[s->calls], keep, 8);
    if (s->calls == s->stop_at) return 7;
    *cost_out = s->costs[s->calls < s->count ? s->calls : s->count - 1];
    s->calls++;
    return 0;
}

static void test_progressive_structures_scripted(void) {
    float w1[8 * 4], w2[4 * 8], o1[8 * 4], o2[4 * 8];
    fill(w1, 32, 3);
    fill(w2, 32, 4);
    memcpy(o1, w1, sizeof(o1));
    memcpy(o2, w2, sizeof(o2));
    pk_group_member members[2];
    memset(members, 0, sizeof(members));
    pk_matrix a = {w1, 8, 4, 4, PK_DTYPE_FLOAT32, 0}, b = {w2, 4, 8, 8, PK_DTYPE_FLOAT32, 0};
    members[0].tensor = a;
    members[0].axis = PK_AXIS_ROWS;
    members[0].scored = 1;
    members[0].span = 1;
    members[1].tensor = b;
    members[1].axis = PK_AXIS_COLS;
    members[1].scored = 1;
    members[1].span = 1;
    pk_group group;
    memset(&group, 0, sizeof(group));
    group.members = members;
    group.member_count = 2;
    const double scores[8] = {5, 1, 7, 3, 8, 2, 6, 4};
    pk_structure_options scoring;
    pk_structure_options_init(&scoring);
    scoring.scores = scores;
    pk_progressive_options o;
    pk_progressive_options_init(&o);
    o.target_ratio = 0.75;
    o.step_ratio = 0.25;
    o.tolerance = 0.01;
    const double costs[] = {0.0, 0.005, 0.02, 0.01, 0.5};
    script s = {costs, 5, 0, -1, {{0}}};
    uint8_t keep[8], prot[8];
    pk_progressive_result r;
    pk_status st = pk_progressive_structures(&group, 1, &scoring, &o, scripted, &s, keep, prot, &r);
    CHECK(st == PK_OK, "progressive: %s", pk_last_error());
    const uint8_t want_keep[8] = {0, 0, 1, 1, 1, 0, 0, 1};
    CHECK(memcmp(keep, want_keep, 8) == 0 && memcmp(prot, want_keep, 8) == 0, "keep / protected");
    CHECK(r.pruned == 4 && r.evaluations == 5 && r.accepted == 2 && r.rejected == 2 &&
              r.stop == PK_PROGRESSIVE_STOP_NO_ACCEPTABLE_STEP && r.final_cost == 0.01,
          "result %lld %lld %lld %lld %d", (long long)r.pruned, (long long)r.evaluations, (long long)r.accepted,
          (long long)r.rejected, r.stop);
    const uint8_t second[8] = {1, 0, 1, 0, 1, 0, 1, 0}; /* the rejected step 2 removed 3 and 7 too */
    CHECK(memcmp(s.seen[2], second, 8) == 0, "the second step's candidates");
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < 4; j++)
            CHECK(w1[i * 4 + j] == (want_keep[i] ? o1[i * 4 + j] : 0.0f) && w2[j * 8 + i] == (want_keep[i] ? o2[j * 8 + i] : 0.0f),
                  "weights at channel %d", i);

    /* A callback that stops at its fourth call: PK_ERROR_CANCELLED, every weight as before. */
    memcpy(w1, o1, sizeof(o1));
    memcpy(w2, o2, sizeof(o2));
    script stop = {costs, 5, 0, 3, {{0}}};
    memset(keep, 9, sizeof(keep));
    st = pk_progressive_structures(&group, 1, &scoring, &o, scripted, &stop, keep, prot, &r);
    CHECK(st == PK_ERROR_CANCELLED && strstr(pk_last_error(), "returned 7"), "cancel: %s", pk_status_string(st));
    CHECK(memcmp(w1, o1, sizeof(o1)) == 0 && memcmp(w2, o2, sizeof(o2)) == 0, "weights after a cancel");
    CHECK(keep[0] == 9, "keep_out written on error");
    const double nan_costs[] = {0.0, NAN};
    script nan_script = {nan_costs, 2, 0, -1, {{0}}};
    st = pk_progressive_structures(&group, 1, &scoring, &o, scripted, &nan_script, keep, prot, &r);
    CHECK(st == PK_ERROR_NON_FINITE, "nan cost: %s", pk_status_string(st));
    CHECK(memcmp(w1, o1, sizeof(o1)) == 0 && memcmp(w2, o2, sizeof(o2)) == 0, "weights after a NaN");
    CHECK(pk_progressive_structures(&group, 1, &scoring, &o, NULL, NULL, keep, prot, &r) == PK_ERROR_NULL_POINTER, "NULL fn");
}

static int damage_table(void *user_data, int64_t layer, double ratio, double *damage_out) {
    (void)user_data;
    static const double table[3][2] = {{1.0, 10.0}, {0.5, 100.0}, {4.0, 5.0}};
    *damage_out = table[layer][ratio == 0.5 ? 0 : 1];
    return 0;
}

static void test_sensitivity(void) {
    const int64_t sizes[3] = {100, 200, 100};
    const double probes[2] = {0.5, 1.0};
    double ratios[3];
    int64_t counts[3];
    CHECK(pk_sensitivity_ratios(sizes, 3, probes, 2, 0.6, damage_table, NULL, ratios, counts) == PK_OK, "%s", pk_last_error());
    CHECK(counts[0] == 50 && counts[1] == 100 && counts[2] == 90, "counts %lld %lld %lld", (long long)counts[0],
          (long long)counts[1], (long long)counts[2]);
}


/* Soft mode (PDP) through the pruner: m and dm/dw against pk_soft_mask and against finite
 * differences of the pruner's own m (the host's weight moved by +-h, the step re-applied),
 * weights untouched before the end, hardening at the exact count at the end, a mid-schedule
 * state round trip that gives identical later masks, and refused combinations. */
enum { SR = 6, SC = 40 };

static pk_pruner *make_soft(pk_matrix *m, int32_t kind, double temperature, int64_t decay, pk_status *status) {
    pk_selection sel;
    pk_selection_init(&sel);
    pk_schedule s;
    pk_schedule_init(&s);
    s.kind = PK_SCHEDULE_CUBIC;
    s.begin = 0;
    s.end = 10;
    s.frequency = 1;
    s.final_sparsity = 0.75;
    pk_pruner_options o;
    pk_pruner_options_init(&o);
    o.soft_temperature = temperature;
    o.decay_steps = decay;
    o.gradient_momentum = 0.5;
    pk_criterion c;
    pk_criterion_init(&c);
    c.kind = kind;
    const pk_criterion *cs[1] = {&c};
    pk_pruner *p = NULL;
    *status = pk_pruner_create(m, 1, cs, &sel, &s, NULL, &o, &p);
    return p;
}

/* Row r's boundary entries (largest pruned and smallest kept magnitude under the hard mask). */
static void boundaries(const double *w, const uint8_t *mask, int r, int *lo, int *hi) {
    double a = -1, b = 1e300;
    *lo = *hi = -1;
    for (int j = 0; j < SC; j++) {
        double q = w[r * SC + j] * w[r * SC + j];
        if (!mask[r * SC + j] && q > a) { a = q; *lo = j; }
        if (mask[r * SC + j] && q < b) { b = q; *hi = j; }
    }
}

static void test_soft_mode(void) {
    static double w[SR * SC], original[SR * SC], other[SR * SC];
    for (int i = 0; i < SR * SC; i++) {
        unsigned x = (unsigned)i * 2654435761u + 17u;
        w[i] = ((double)(x % 20011u) / 20011.0 - 0.5) * 2.0;
    }
    memcpy(original, w, sizeof w);
    pk_matrix m = {w, SR, SC, SC, PK_DTYPE_FLOAT64, 0};
    pk_status st;
    const double T = 0.05;
    pk_pruner *p = make_soft(&m, PK_CRITERION_MAGNITUDE, T, 0, &st);
    CHECK(st == PK_OK && p, "soft create: %s", pk_last_error());
    float mk[SR * SC], dk[SR * SC], m2[SR * SC], d2[SR * SC];
    CHECK(pk_pruner_soft_mask(p, 0, mk, dk, SR * SC) == PK_OK && mk[0] == 1.0f && dk[0] == 0.0f,
          "before any step m = 1, dm/dw = 0");
    for (int64_t t = 0; t <= 5; t++) CHECK(pk_pruner_step(p, t, NULL) == PK_OK, "soft step %d: %s", (int)t, pk_last_error());
    CHECK(memcmp(w, original, sizeof w) == 0, "soft mode before the end writes no weight");
    /* Against pk_soft_mask at the step's scheduled sparsity. */
    pk_schedule s;
    pk_schedule_init(&s);
    s.kind = PK_SCHEDULE_CUBIC; s.begin = 0; s.end = 10; s.frequency = 1; s.final_sparsity = 0.75;
    double s5 = 0;
    pk_schedule_sparsity(&s, 5, &s5);
    pk_selection sel;
    pk_selection_init(&sel);
    sel.sparsity = s5;
    CHECK(pk_soft_mask(&m, &sel, T, m2, d2) == PK_OK, "pk_soft_mask: %s", pk_last_error());
    CHECK(pk_pruner_soft_mask(p, 0, mk, dk, SR * SC) == PK_OK, "soft mask: %s", pk_last_error());
    CHECK(memcmp(mk, m2, sizeof mk) == 0 && memcmp(dk, d2, sizeof dk) == 0,
          "the pruner's m and dm/dw equal pk_soft_mask's at the step's sparsity %.5f", s5);
    float factors[SR * SC];
    CHECK(pk_pruner_factors(p, 0, factors, SR * SC) == PK_OK && memcmp(factors, mk, sizeof mk) == 0,
          "pk_pruner_factors gives the soft mask");
    uint8_t hard[SR * SC];
    pk_pruner_mask(p, 0, hard, SR * SC);
    /* Finite differences of the pruner's own m: re-apply step 5 with one weight moved. */
    const double h = 1e-4;
    int checked = 0, bad = 0;
    double worst = 0;
    for (int r = 0; r < 2; r++) {
        int lo, hi;
        boundaries(original, hard, r, &lo, &hi);
        for (int j = 0; j < SC; j++) {
            if (j == lo || j == hi) continue; /* moving these moves the threshold */
            int i = r * SC + j;
            float plus[SR * SC], minus[SR * SC];
            w[i] = original[i] + h;
            pk_pruner_step(p, 5, NULL);
            pk_pruner_soft_mask(p, 0, plus, NULL, SR * SC);
            w[i] = original[i] - h;
            pk_pruner_step(p, 5, NULL);
            pk_pruner_soft_mask(p, 0, minus, NULL, SR * SC);
            w[i] = original[i];
            double numeric = ((double)plus[i] - (double)minus[i]) / (2 * h);
            double err = fabs(numeric - dk[i]);
            if (err > worst) worst = err;
            if (err > 2e-3 + 1e-2 * fabs(dk[i])) bad++;
            checked++;
        }
    }
    CHECK(checked == 2 * (SC - 2) && bad == 0, "dm/dw vs finite differences: %d of %d off, worst %.3g", bad, checked, worst);
    pk_pruner_step(p, 5, NULL);
    /* A mid-schedule state round trip: a second pruner over a copy of the weights resumes identically. */
    size_t size = 0, written = 0;
    pk_pruner_serialized_size(p, &size);
    unsigned char *bytes = (unsigned char *)malloc(size);
    CHECK(pk_pruner_serialize(p, bytes, size, &written) == PK_OK && written == size, "serialize: %s", pk_last_error());
    memcpy(other, w, sizeof w);
    pk_matrix m_other = {other, SR, SC, SC, PK_DTYPE_FLOAT64, 0};
    pk_pruner *q = make_soft(&m_other, PK_CRITERION_MAGNITUDE, T, 0, &st);
    CHECK(pk_pruner_restore(q, bytes, size) == PK_OK, "restore: %s", pk_last_error());
    pk_pruner_soft_mask(q, 0, m2, d2, SR * SC);
    pk_pruner_soft_mask(p, 0, mk, dk, SR * SC);
    CHECK(memcmp(mk, m2, sizeof mk) == 0 && memcmp(dk, d2, sizeof dk) == 0, "restored soft masks equal");
    pk_matrix m_wrong = m_other;
    pk_pruner *wrong = make_soft(&m_wrong, PK_CRITERION_MAGNITUDE, 2 * T, 0, &st);
    CHECK(pk_pruner_restore(wrong, bytes, size) == PK_ERROR_CORRUPT_DATA, "another temperature's state is refused");
    pk_pruner_free(wrong);
    free(bytes);
    int same = 1;
    for (int64_t t = 6; t <= 12; t++) {
        for (int i = 0; i < SR * SC; i++) { /* the host's training step, the same on both */
            double g = 0.01 * (double)(((i * 7 + (int)t * 13) % 11) - 5);
            w[i] -= g;
            other[i] -= g;
        }
        pk_pruner_step(p, t, NULL);
        pk_pruner_step(q, t, NULL);
        pk_pruner_soft_mask(p, 0, mk, dk, SR * SC);
        pk_pruner_soft_mask(q, 0, m2, d2, SR * SC);
        if (memcmp(mk, m2, sizeof mk) != 0 || memcmp(dk, d2, sizeof dk) != 0) same = 0;
    }
    CHECK(same && memcmp(w, other, sizeof w) == 0, "after restore the later soft masks, the hardening and the weights are identical");
    /* Hardened at the end (step 10 was applied): exact count, weights written, m binary, dm/dw 0. */
    pk_pruner_mask(p, 0, hard, SR * SC);
    int exact = 1, written_ok = 1, binary = 1;
    for (int r = 0; r < SR; r++) {
        int pruned = 0;
        for (int j = 0; j < SC; j++) {
            int i = r * SC + j;
            pruned += !hard[i];
            if (!hard[i] && w[i] != 0.0) written_ok = 0;
            if (mk[i] != (hard[i] ? 1.0f : 0.0f) || dk[i] != 0.0f) binary = 0;
        }
        if (pruned != (int)(0.75 * SC)) exact = 0;
    }
    CHECK(exact, "hardened: exactly floor(0.75 * %d) pruned in every row", SC);
    CHECK(written_ok, "hardened: the pruned weights are +0.0");
    CHECK(binary, "hardened: m is the binary mask, dm/dw = 0");
    /* The hardened mask is pk_mask's (magnitude, 0.75 per row) of the weights at step 10. */
    pk_pruner_free(p);
    pk_pruner_free(q);
    /* Refused: decay with soft, a negative or NaN temperature, random scores. */
    pk_pruner *r1 = make_soft(&m, PK_CRITERION_MAGNITUDE, T, 5, &st);
    CHECK(st == PK_ERROR_INVALID_ARGUMENT && !r1, "soft + decay refused");
    r1 = make_soft(&m, PK_CRITERION_MAGNITUDE, -1.0, 0, &st);
    CHECK(st == PK_ERROR_INVALID_ARGUMENT && !r1, "negative temperature refused");
    r1 = make_soft(&m, PK_CRITERION_MAGNITUDE, NAN, 0, &st);
    CHECK(st == PK_ERROR_INVALID_ARGUMENT && !r1, "NaN temperature refused");
    r1 = make_soft(&m, PK_CRITERION_RANDOM, T, 0, &st);
    CHECK(st == PK_ERROR_INVALID_ARGUMENT && !r1 && strstr(pk_last_error(), "random"), "random refused: %s", pk_last_error());
    CHECK(pk_pruner_soft_mask(NULL, 0, mk, dk, SR * SC) != PK_OK, "NULL handle refused");
    /* A caller of the layout before soft_temperature was appended gets hard masks; a smaller size is refused. */
    pk_pruner_options old;
    pk_pruner_options_init(&old);
    old.struct_size = offsetof(pk_pruner_options, soft_temperature);
    pk_schedule os;
    pk_schedule_init(&os);
    pk_selection osel;
    pk_selection_init(&osel);
    pk_pruner *r2 = NULL;
    CHECK(pk_pruner_create(&m, 1, NULL, &osel, &os, NULL, &old, &r2) == PK_OK && r2, "old struct_size: %s", pk_last_error());
    CHECK(pk_pruner_step(r2, 0, NULL) == PK_OK && pk_pruner_soft_mask(r2, 0, mk, dk, SR * SC) == PK_OK && dk[0] == 0.0f,
          "old struct_size: a hard pruner");
    pk_pruner_free(r2);
    r2 = NULL;
    old.struct_size = offsetof(pk_pruner_options, soft_temperature) - 8;
    CHECK(pk_pruner_create(&m, 1, NULL, &osel, &os, NULL, &old, &r2) == PK_ERROR_STRUCT_SIZE && !r2, "smaller struct_size refused");
}

/* Gradient flow in soft mode: dm/dw through the moving score, against finite differences of the
 * pruner's m with the state restored before each perturbed step. */
static void test_soft_gradient_flow(void) {
    static float w[SR * SC], g[SR * SC], base[SR * SC];
    fill(w, SR * SC, 7);
    fill(g, SR * SC, 8);
    memcpy(base, w, sizeof w);
    pk_matrix m = {w, SR, SC, SC, PK_DTYPE_FLOAT32, 0};
    pk_matrix gm = {g, SR, SC, SC, PK_DTYPE_FLOAT32, 0};
    pk_status st;
    const double T = 0.02;
    pk_pruner *p = make_soft(&m, PK_CRITERION_TAYLOR, T, 0, &st);
    CHECK(st == PK_OK && p, "soft gradient-flow create: %s", pk_last_error());
    CHECK(pk_pruner_step(p, 4, NULL) == PK_ERROR_INVALID_ARGUMENT, "gradient flow without gradients refused");
    for (int64_t t = 0; t < 4; t++) pk_pruner_step(p, t, &gm);
    size_t size = 0, written = 0;
    pk_pruner_serialized_size(p, &size);
    unsigned char *bytes = (unsigned char *)malloc(size);
    pk_pruner_serialize(p, bytes, size, &written);
    CHECK(pk_pruner_step(p, 4, &gm) == PK_OK, "step: %s", pk_last_error());
    float mk[SR * SC], dk[SR * SC];
    uint8_t hard[SR * SC];
    pk_pruner_soft_mask(p, 0, mk, dk, SR * SC);
    pk_pruner_mask(p, 0, hard, SR * SC);
    const float h = 1e-3f;
    int checked = 0, bad = 0, nonzero = 0;
    double worst = 0;
    for (int r = 0; r < 2; r++) {
        /* The row's boundary entries (highest m pruned, lowest m kept) define t^2: skipped. */
        int lo = -1, hi = -1;
        for (int j = 0; j < SC; j++) {
            int i = r * SC + j;
            if (!hard[i] && (lo < 0 || mk[i] > mk[r * SC + lo])) lo = j;
            if (hard[i] && (hi < 0 || mk[i] < mk[r * SC + hi])) hi = j;
        }
        for (int j = 0; j < SC; j++) {
            int i = r * SC + j;
            float plus[SR * SC], minus[SR * SC];
            if (j == lo || j == hi) continue;
            w[i] = base[i] + h;
            pk_pruner_restore(p, bytes, size);
            pk_pruner_step(p, 4, &gm);
            pk_pruner_soft_mask(p, 0, plus, NULL, SR * SC);
            w[i] = base[i] - h;
            pk_pruner_restore(p, bytes, size);
            pk_pruner_step(p, 4, &gm);
            pk_pruner_soft_mask(p, 0, minus, NULL, SR * SC);
            w[i] = base[i];
            /* Skip entries whose move changes the row's hard mask (boundary entries). */
            uint8_t after[SR * SC];
            pk_pruner_mask(p, 0, after, SR * SC);
            if (memcmp(after, hard, sizeof hard) != 0) continue;
            double numeric = ((double)plus[i] - (double)minus[i]) / (2.0 * (double)h);
            double err = fabs(numeric - dk[i]);
            if (err > worst) worst = err;
            if (err > 5e-3 + 2e-2 * fabs(dk[i])) bad++;
            if (fabs(dk[i]) > 1e-2) nonzero++;
            checked++;
        }
    }
    CHECK(checked >= 2 * SC - 12 && bad == 0 && nonzero > 5,
          "gradient-flow dm/dw vs finite differences: %d of %d off (worst %.3g), %d clearly non-zero", bad, checked,
          worst, nonzero);
    free(bytes);
    pk_pruner_free(p);
}

/* The pruner takes its threads from selection->num_threads when options->num_threads is 0 (and
 * from options->num_threads otherwise): the masks and weights after every step are the same at
 * 1, 2 and 3 threads, each way (two decaying layers ranked per row, 64 rows each). */
static void test_pruner_thread_counts(void) {
    enum { R = 64, C = 96, STEPS = 12 };
    static float start[2][R * C], w[2][R * C], first_w[2][R * C];
    static uint8_t mask[R * C], first_mask[2][R * C];
    fill(start[0], R * C, 5);
    fill(start[1], R * C, 6);
    int same = 1;
    for (int run = 0; run < 6; run++) {
        int32_t threads = 1 + run % 3;
        memcpy(w, start, sizeof w);
        pk_matrix m[2] = {{w[0], R, C, C, PK_DTYPE_FLOAT32, 0}, {w[1], R, C, C, PK_DTYPE_FLOAT32, 0}};
        pk_selection sel;
        pk_selection_init(&sel);
        pk_schedule s;
        pk_schedule_init(&s);
        s.begin = 0;
        s.end = 8;
        s.frequency = 2;
        s.final_sparsity = 0.7;
        pk_pruner_options o;
        pk_pruner_options_init(&o);
        o.decay_steps = 3;
        if (run < 3) sel.num_threads = threads; else o.num_threads = threads;
        pk_pruner *p = NULL;
        CHECK(pk_pruner_create(m, 2, NULL, &sel, &s, NULL, &o, &p) == PK_OK && p, "threads %d: %s", threads, pk_last_error());
        if (!p) return;
        for (int64_t t = 0; t < STEPS; t++) CHECK(pk_pruner_step(p, t, NULL) == PK_OK, "step: %s", pk_last_error());
        for (int l = 0; l < 2; l++) {
            CHECK(pk_pruner_mask(p, l, mask, R * C) == PK_OK, "mask: %s", pk_last_error());
            if (run == 0) {
                memcpy(first_mask[l], mask, sizeof mask);
                memcpy(first_w[l], w[l], sizeof w[l]);
            } else {
                same = same && memcmp(first_mask[l], mask, sizeof mask) == 0 && memcmp(first_w[l], w[l], sizeof w[l]) == 0;
            }
        }
        pk_pruner_free(p);
    }
    CHECK(same, "the pruner's masks and weights are the same at 1, 2 and 3 threads");
    /* A negative count is refused from either struct. */
    pk_matrix m = {w[0], R, C, C, PK_DTYPE_FLOAT32, 0};
    pk_selection sel;
    pk_selection_init(&sel);
    pk_schedule s;
    pk_schedule_init(&s);
    pk_pruner_options o;
    pk_pruner_options_init(&o);
    pk_pruner *p = NULL;
    o.num_threads = -1;
    CHECK(pk_pruner_create(&m, 1, NULL, &sel, &s, NULL, &o, &p) == PK_ERROR_INVALID_ARGUMENT && !p, "options->num_threads -1");
    o.num_threads = 0;
    sel.num_threads = -1;
    CHECK(pk_pruner_create(&m, 1, NULL, &sel, &s, NULL, &o, &p) == PK_ERROR_INVALID_ARGUMENT && !p, "selection->num_threads -1");
}

int main(void) {
    test_pruner_thread_counts();
    test_soft_mode();
    test_soft_gradient_flow();
    test_freed_and_forged_handles();
    test_threads_on_one_handle_and_state_round_trip();
    test_progressive_structures_scripted();
    test_sensitivity();
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
