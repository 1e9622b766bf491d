// Wide-vector kernels of prunekit_shims.h: AVX2 + FMA through target attributes, so the rest of
// the library stays baseline x86-64 and the choice is made at run time.
#include "prunekit_shims.h"

/* Products and differences stay separate operations (no fused multiply-add where the source
 * writes a * b - c): the kernels must round as the baseline loops do. */
#pragma STDC FP_CONTRACT OFF

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#include <cpuid.h>
#include <immintrin.h>
#include <math.h>

int prunekit_wide_supported(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    if (!(c & bit_OSXSAVE) || !(c & bit_AVX) || !(c & bit_FMA)) return 0;
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & 6) != 6) return 0;   /* the OS saves the XMM and YMM state */
    if (__get_cpuid_max(0, 0) < 7) return 0;
    __cpuid_count(7, 0, a, b, c, d);
    return (b & bit_AVX2) ? 1 : 0;
}

static inline uint32_t flag_of(uint32_t bits) { return (bits & 0x7F800000u) + 0x00800000u; }

__attribute__((target("avx2,fma")))
double prunekit_wide_sum(const float *x, ptrdiff_t count, int squared, uint32_t *flags) {
    const __m256i exponent = _mm256_set1_epi32(0x7F800000), carry = _mm256_set1_epi32(0x00800000),
                  magnitude = _mm256_set1_epi32(0x7FFFFFFF);
    __m256d low = _mm256_setzero_pd(), high = _mm256_setzero_pd();
    __m256i f = _mm256_setzero_si256();
    ptrdiff_t j = 0;
    if (squared) {
        for (; j + 8 <= count; j += 8) {
            __m256i bits = _mm256_loadu_si256((const __m256i *)(x + j));
            f = _mm256_or_si256(f, _mm256_add_epi32(_mm256_and_si256(bits, exponent), carry));
            __m256 v = _mm256_castsi256_ps(bits);
            __m256d v0 = _mm256_cvtps_pd(_mm256_castps256_ps128(v)), v1 = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
            low = _mm256_fmadd_pd(v0, v0, low);
            high = _mm256_fmadd_pd(v1, v1, high);
        }
    } else {
        for (; j + 8 <= count; j += 8) {
            __m256i bits = _mm256_loadu_si256((const __m256i *)(x + j));
            f = _mm256_or_si256(f, _mm256_add_epi32(_mm256_and_si256(bits, exponent), carry));
            __m256 v = _mm256_castsi256_ps(_mm256_and_si256(bits, magnitude));
            low = _mm256_add_pd(low, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
            high = _mm256_add_pd(high, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
        }
    }
    __m128i f4 = _mm_or_si128(_mm256_castsi256_si128(f), _mm256_extracti128_si256(f, 1));
    f4 = _mm_or_si128(f4, _mm_shuffle_epi32(f4, 0x4E));
    f4 = _mm_or_si128(f4, _mm_shuffle_epi32(f4, 0xB1));
    uint32_t flag = (uint32_t)_mm_cvtsi128_si32(f4);
    double tail = 0;
    for (; j < count; j++) {
        uint32_t bits;
        __builtin_memcpy(&bits, x + j, 4);
        flag |= flag_of(bits);
        double v = (double)x[j];
        tail += squared ? v * v : fabs(v);
    }
    *flags |= flag;
    __m256d half = _mm256_add_pd(low, high);                                    /* l0+l4, l1+l5, l2+l6, l3+l7 */
    __m128d quarter = _mm_add_pd(_mm256_castpd256_pd128(half), _mm256_extractf128_pd(half, 1));
    return (_mm_cvtsd_f64(quarter) + _mm_cvtsd_f64(_mm_unpackhi_pd(quarter, quarter))) + tail;
}

__attribute__((target("avx2,fma")))
uint32_t prunekit_wide_column_sums4(const float *a, const float *b, const float *c, const float *d, double *acc,
                                    ptrdiff_t count, int squared) {
    const __m128i exponent = _mm_set1_epi32(0x7F800000), carry = _mm_set1_epi32(0x00800000),
                  magnitude = _mm_set1_epi32(0x7FFFFFFF);
    __m128i f = _mm_setzero_si128();
    ptrdiff_t j = 0;
    for (; j + 4 <= count; j += 4) {
        __m128i ra = _mm_loadu_si128((const __m128i *)(a + j)), rb = _mm_loadu_si128((const __m128i *)(b + j)),
                rc = _mm_loadu_si128((const __m128i *)(c + j)), rd = _mm_loadu_si128((const __m128i *)(d + j));
        f = _mm_or_si128(f, _mm_or_si128(_mm_or_si128(_mm_add_epi32(_mm_and_si128(ra, exponent), carry),
                                                      _mm_add_epi32(_mm_and_si128(rb, exponent), carry)),
                                         _mm_or_si128(_mm_add_epi32(_mm_and_si128(rc, exponent), carry),
                                                      _mm_add_epi32(_mm_and_si128(rd, exponent), carry))));
        if (!squared) {
            ra = _mm_and_si128(ra, magnitude);
            rb = _mm_and_si128(rb, magnitude);
            rc = _mm_and_si128(rc, magnitude);
            rd = _mm_and_si128(rd, magnitude);
        }
        __m256d x = _mm256_cvtps_pd(_mm_castsi128_ps(ra)), y = _mm256_cvtps_pd(_mm_castsi128_ps(rb)),
                z = _mm256_cvtps_pd(_mm_castsi128_ps(rc)), w = _mm256_cvtps_pd(_mm_castsi128_ps(rd));
        /* (x^2 + y^2) + (z^2 + w^2): each square is exact, so the fused forms round alike */
        __m256d sum = squared ? _mm256_add_pd(_mm256_fmadd_pd(x, x, _mm256_mul_pd(y, y)), _mm256_fmadd_pd(z, z, _mm256_mul_pd(w, w)))
                              : _mm256_add_pd(_mm256_add_pd(x, y), _mm256_add_pd(z, w));
        _mm256_storeu_pd(acc + j, _mm256_add_pd(_mm256_loadu_pd(acc + j), sum));
    }
    f = _mm_or_si128(f, _mm_shuffle_epi32(f, 0x4E));
    f = _mm_or_si128(f, _mm_shuffle_epi32(f, 0xB1));
    uint32_t flag = (uint32_t)_mm_cvtsi128_si32(f);
    for (; j < count; j++) {
        uint32_t bits[4];
        __builtin_memcpy(&bits[0], a + j, 4);
        __builtin_memcpy(&bits[1], b + j, 4);
        __builtin_memcpy(&bits[2], c + j, 4);
        __builtin_memcpy(&bits[3], d + j, 4);
        flag |= flag_of(bits[0]) | flag_of(bits[1]) | flag_of(bits[2]) | flag_of(bits[3]);
        double x = a[j], y = b[j], z = c[j], w = d[j];
        acc[j] += squared ? (x * x + y * y) + (z * z + w * w) : (fabs(x) + fabs(y)) + (fabs(z) + fabs(w));
    }
    return flag;
}

/* The 8-lane mask of the first `left` lanes (left in 1...7). */
__attribute__((target("avx2,fma")))
static inline __m256i first_lanes(ptrdiff_t left) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)left), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

__attribute__((target("avx2,fma")))
void prunekit_wide_obs_float(float *row, const int32_t *list, ptrdiff_t listed, const float *diagonal,
                             const float *inverse, ptrdiff_t start, ptrdiff_t end, ptrdiff_t count) {
    for (ptrdiff_t i = 0; i < listed; i++) {
        ptrdiff_t c = list[i];
        __m128 e1 = _mm_div_ss(_mm_set_ss(row[c]), _mm_set_ss(diagonal[c]));
        row[c] = 0;
        const float *u = inverse + (c - start) * count - start;
        __m256 e = _mm256_broadcastss_ps(e1);
        ptrdiff_t j = c + 1;
        for (; j + 8 <= end; j += 8)
            _mm256_storeu_ps(row + j, _mm256_sub_ps(_mm256_loadu_ps(row + j), _mm256_mul_ps(e, _mm256_loadu_ps(u + j))));
        if (j < end) {
            __m256i m = first_lanes(end - j);
            __m256 x = _mm256_maskload_ps(row + j, m), y = _mm256_maskload_ps(u + j, m);
            _mm256_maskstore_ps(row + j, m, _mm256_sub_ps(x, _mm256_mul_ps(e, y)));
        }
    }
}

__attribute__((target("avx2,fma")))
void prunekit_wide_obs_double(double *row, const int32_t *list, ptrdiff_t listed, const double *diagonal,
                              const double *inverse, ptrdiff_t start, ptrdiff_t end, ptrdiff_t count) {
    for (ptrdiff_t i = 0; i < listed; i++) {
        ptrdiff_t c = list[i];
        __m128d e1 = _mm_div_sd(_mm_set_sd(row[c]), _mm_set_sd(diagonal[c]));
        row[c] = 0;
        const double *u = inverse + (c - start) * count - start;
        __m256d e = _mm256_broadcastsd_pd(e1);
        ptrdiff_t j = c + 1;
        for (; j + 4 <= end; j += 4)
            _mm256_storeu_pd(row + j, _mm256_sub_pd(_mm256_loadu_pd(row + j), _mm256_mul_pd(e, _mm256_loadu_pd(u + j))));
        for (; j < end; j++)
            _mm_store_sd(row + j, _mm_sub_sd(_mm_load_sd(row + j), _mm_mul_sd(e1, _mm_load_sd(u + j))));
    }
}

/* The statistics kernels over float64 rows, and over float32 rows converted as they load (the
 * conversion is exact, so both give the same sums). One body each, instantiated per input type. */
#define PK_LOAD_D(p) _mm256_loadu_pd(p)
#define PK_LOAD_F(p) _mm256_cvtps_pd(_mm_loadu_ps(p))
/* Two groups of four features per pass down the tile, so that two chains of each add are in
 * flight (the adds' latency hides); a group of four, then single features, for the rest. Zeros
 * are counted in integer lanes (exact, converted once per call). A non-finite x makes its
 * feature's sum of squares inf or NaN, and squares only grow, so checking those sums once per
 * call finds it (an overflowing square flags too: the caller then looks for the value and finds
 * none). `ahead` (may be NULL) are the next tile's rows, fetched into cache while this one runs. */
#define PK_MOMENT_STEP(v, s, q, a, z)                                                                    \
    s = _mm256_add_pd(s, v);                                                                               \
    q = _mm256_add_pd(q, _mm256_mul_pd(v, v));                                                             \
    a = _mm256_add_pd(a, _mm256_and_pd(v, magnitude));                                                     \
    z = _mm256_sub_epi64(z, _mm256_castpd_si256(_mm256_cmp_pd(v, zero, _CMP_EQ_OQ)));
/* Exact for 0 <= count < 2^52: the count's bits under 2^52's exponent, minus 2^52. */
#define PK_COUNT_TO_DOUBLE(z) \
    _mm256_sub_pd(_mm256_castsi256_pd(_mm256_or_si256(z, _mm256_castpd_si256(two52))), two52)
#define PK_NOT_FINITE(q) _mm256_cmp_pd(_mm256_sub_pd(q, q), zero, _CMP_NEQ_UQ)
#define PK_AHEAD(T, j)                                                                                     \
    if (r < na && (((j) * (ptrdiff_t)sizeof(T)) & 63) == 0) _mm_prefetch((const char *)(ahead[r] + (j)), _MM_HINT_T0);
#define PK_MOMENTS(NAME, T, LOAD)                                                                          \
__attribute__((target("avx2,fma")))                                                                       \
int NAME(const T *const *rows, ptrdiff_t nt, ptrdiff_t nf, double *sums, double *squares, double *absolute, \
         double *zeros, const T *const *ahead, ptrdiff_t na) {                                              \
    const __m256d zero = _mm256_setzero_pd(), two52 = _mm256_set1_pd(0x1p52),                             \
                  magnitude = _mm256_castsi256_pd(_mm256_set1_epi64x(0x7FFFFFFFFFFFFFFFLL));              \
    __m256d bad = zero;                                                                                    \
    if (!ahead) na = 0;                                                                                    \
    ptrdiff_t j = 0;                                                                                       \
    for (; j + 8 <= nf; j += 8) {                                                                          \
        __m256d s0 = _mm256_loadu_pd(sums + j), q0 = _mm256_loadu_pd(squares + j),                        \
                a0 = _mm256_loadu_pd(absolute + j);                                                        \
        __m256d s1 = _mm256_loadu_pd(sums + j + 4), q1 = _mm256_loadu_pd(squares + j + 4),                 \
                a1 = _mm256_loadu_pd(absolute + j + 4);                                                    \
        __m256i z0 = _mm256_setzero_si256(), z1 = _mm256_setzero_si256();                                  \
        for (ptrdiff_t r = 0; r < nt; r++) {                                                               \
            __m256d v0 = LOAD(rows[r] + j), v1 = LOAD(rows[r] + j + 4);                                    \
            PK_AHEAD(T, j)                                                                                 \
            PK_MOMENT_STEP(v0, s0, q0, a0, z0)                                                             \
            PK_MOMENT_STEP(v1, s1, q1, a1, z1)                                                             \
        }                                                                                                  \
        bad = _mm256_or_pd(bad, _mm256_or_pd(PK_NOT_FINITE(q0), PK_NOT_FINITE(q1)));                       \
        _mm256_storeu_pd(sums + j, s0);                                                                    \
        _mm256_storeu_pd(squares + j, q0);                                                                 \
        _mm256_storeu_pd(absolute + j, a0);                                                                \
        _mm256_storeu_pd(zeros + j, _mm256_add_pd(_mm256_loadu_pd(zeros + j), PK_COUNT_TO_DOUBLE(z0)));    \
        _mm256_storeu_pd(sums + j + 4, s1);                                                                \
        _mm256_storeu_pd(squares + j + 4, q1);                                                             \
        _mm256_storeu_pd(absolute + j + 4, a1);                                                            \
        _mm256_storeu_pd(zeros + j + 4, _mm256_add_pd(_mm256_loadu_pd(zeros + j + 4), PK_COUNT_TO_DOUBLE(z1))); \
    }                                                                                                      \
    for (; j + 4 <= nf; j += 4) {                                                                          \
        __m256d s = _mm256_loadu_pd(sums + j), q = _mm256_loadu_pd(squares + j),                           \
                a = _mm256_loadu_pd(absolute + j);                                                         \
        __m256i z = _mm256_setzero_si256();                                                                \
        for (ptrdiff_t r = 0; r < nt; r++) {                                                               \
            __m256d v = LOAD(rows[r] + j);                                                                 \
            PK_AHEAD(T, j)                                                                                 \
            PK_MOMENT_STEP(v, s, q, a, z)                                                                  \
        }                                                                                                  \
        bad = _mm256_or_pd(bad, PK_NOT_FINITE(q));                                                         \
        _mm256_storeu_pd(sums + j, s);                                                                     \
        _mm256_storeu_pd(squares + j, q);                                                                  \
        _mm256_storeu_pd(absolute + j, a);                                                                 \
        _mm256_storeu_pd(zeros + j, _mm256_add_pd(_mm256_loadu_pd(zeros + j), PK_COUNT_TO_DOUBLE(z)));     \
    }                                                                                                      \
    int finite = _mm256_movemask_pd(bad) == 0;                                                             \
    for (; j < nf; j++) {                                                                                  \
        for (ptrdiff_t r = 0; r < nt; r++) {                                                               \
            double v = (double)rows[r][j];                                                                 \
            sums[j] += v;                                                                                  \
            squares[j] += v * v;                                                                           \
            absolute[j] += fabs(v);                                                                        \
            zeros[j] += v == 0 ? 1.0 : 0.0;                                                                \
        }                                                                                                  \
        finite = finite && isfinite(squares[j]);                                                           \
    }                                                                                                      \
    return finite;                                                                                         \
}

/* Four independent accumulators (16 features) so that the adds' latency hides. */
#define PK_DEVIATIONS(NAME, T, LOAD)                                                                       \
__attribute__((target("avx2,fma")))                                                                       \
void NAME(const T *const *rows, ptrdiff_t nt, ptrdiff_t nf, const double *means, double *m2,              \
          const T *const *ahead, ptrdiff_t na) {                                                           \
    if (!ahead) na = 0;                                                                                    \
    ptrdiff_t j = 0;                                                                                       \
    for (; j + 16 <= nf; j += 16) {                                                                        \
        __m256d u0 = _mm256_loadu_pd(means + j), u1 = _mm256_loadu_pd(means + j + 4),                      \
                u2 = _mm256_loadu_pd(means + j + 8), u3 = _mm256_loadu_pd(means + j + 12);                 \
        __m256d a0 = _mm256_loadu_pd(m2 + j), a1 = _mm256_loadu_pd(m2 + j + 4),                            \
                a2 = _mm256_loadu_pd(m2 + j + 8), a3 = _mm256_loadu_pd(m2 + j + 12);                       \
        for (ptrdiff_t r = 0; r < nt; r++) {                                                               \
            const T *x = rows[r] + j;                                                                      \
            PK_AHEAD(T, j)                                                                                 \
            if (sizeof(T) == 8) PK_AHEAD(T, j + 8)                                                         \
            __m256d d0 = _mm256_sub_pd(LOAD(x), u0), d1 = _mm256_sub_pd(LOAD(x + 4), u1),                  \
                    d2 = _mm256_sub_pd(LOAD(x + 8), u2), d3 = _mm256_sub_pd(LOAD(x + 12), u3);             \
            a0 = _mm256_add_pd(a0, _mm256_mul_pd(d0, d0));                                                 \
            a1 = _mm256_add_pd(a1, _mm256_mul_pd(d1, d1));                                                 \
            a2 = _mm256_add_pd(a2, _mm256_mul_pd(d2, d2));                                                 \
            a3 = _mm256_add_pd(a3, _mm256_mul_pd(d3, d3));                                                 \
        }                                                                                                  \
        _mm256_storeu_pd(m2 + j, a0);                                                                      \
        _mm256_storeu_pd(m2 + j + 4, a1);                                                                  \
        _mm256_storeu_pd(m2 + j + 8, a2);                                                                  \
        _mm256_storeu_pd(m2 + j + 12, a3);                                                                 \
    }                                                                                                      \
    for (; j < nf; j++) {                                                                                  \
        for (ptrdiff_t r = 0; r < nt; r++) {                                                               \
            double d = (double)rows[r][j] - means[j];                                                      \
            m2[j] += d * d;                                                                                \
        }                                                                                                  \
    }                                                                                                      \
}

PK_MOMENTS(prunekit_wide_moments, double, PK_LOAD_D)
PK_MOMENTS(prunekit_wide_moments_float, float, PK_LOAD_F)
PK_DEVIATIONS(prunekit_wide_deviations, double, PK_LOAD_D)
PK_DEVIATIONS(prunekit_wide_deviations_float, float, PK_LOAD_F)

#else   /* no wide kernels on this architecture or compiler: never chosen */

int prunekit_wide_supported(void) { return 0; }
double prunekit_wide_sum(const float *x, ptrdiff_t count, int squared, uint32_t *flags) {
    (void)x; (void)count; (void)squared; (void)flags;
    return 0;
}
uint32_t prunekit_wide_column_sums4(const float *a, const float *b, const float *c, const float *d, double *acc,
                                    ptrdiff_t count, int squared) {
    (void)a; (void)b; (void)c; (void)d; (void)acc; (void)count; (void)squared;
    return 0;
}
void prunekit_wide_obs_float(float *row, const int32_t *list, ptrdiff_t listed, const float *diagonal,
                             const float *inverse, ptrdiff_t start, ptrdiff_t end, ptrdiff_t count) {
    (void)row; (void)list; (void)listed; (void)diagonal; (void)inverse; (void)start; (void)end; (void)count;
}
void prunekit_wide_obs_double(double *row, const int32_t *list, ptrdiff_t listed, const double *diagonal,
                              const double *inverse, ptrdiff_t start, ptrdiff_t end, ptrdiff_t count) {
    (void)row; (void)list; (void)listed; (void)diagonal; (void)inverse; (void)start; (void)end; (void)count;
}
int prunekit_wide_moments(const double *const *rows, ptrdiff_t nt, ptrdiff_t nf, double *sums, double *squares,
                          double *absolute, double *zeros, const double *const *ahead, ptrdiff_t na) {
    (void)rows; (void)nt; (void)nf; (void)sums; (void)squares; (void)absolute; (void)zeros; (void)ahead; (void)na;
    return 0;
}
void prunekit_wide_deviations(const double *const *rows, ptrdiff_t nt, ptrdiff_t nf, const double *means,
                              double *m2, const double *const *ahead, ptrdiff_t na) {
    (void)rows; (void)nt; (void)nf; (void)means; (void)m2; (void)ahead; (void)na;
}
int prunekit_wide_moments_float(const float *const *rows, ptrdiff_t nt, ptrdiff_t nf, double *sums, double *squares,
                                double *absolute, double *zeros, const float *const *ahead, ptrdiff_t na) {
    (void)rows; (void)nt; (void)nf; (void)sums; (void)squares; (void)absolute; (void)zeros; (void)ahead; (void)na;
    return 0;
}
void prunekit_wide_deviations_float(const float *const *rows, ptrdiff_t nt, ptrdiff_t nf, const double *means,
                                    double *m2, const float *const *ahead, ptrdiff_t na) {
    (void)rows; (void)nt; (void)nf; (void)means; (void)m2; (void)ahead; (void)na;
}
#endif
