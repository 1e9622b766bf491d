// Compiler builtins and wide-vector kernels the Swift core needs and Swift does not expose.
// A C shim: no Swift API of its own, nothing exported from libprunekit.so.
#ifndef PRUNEKIT_SHIMS_H
#define PRUNEKIT_SHIMS_H
#include <stddef.h>
#include <stdint.h>

/// Asks for the cache lines of [address, address + bytes) ahead of use (a hint; never faults).
static inline void prunekit_prefetch(const void *address, size_t bytes) {
    const char *p = (const char *)address;
    for (size_t offset = 0; offset < bytes; offset += 64) __builtin_prefetch(p + offset, 0, 3);
}

// Wide kernels (AVX2 + FMA, chosen at run time). Each gives bit-for-bit the result of the
// baseline Swift loop it stands for: the same float64 additions in the same order (a fused
// multiply-add of a float32 square changes nothing, since the square of a float32 is exact in
// float64). Call them only when prunekit_wide_supported() says so.

/// 1 when the CPU and the operating system support AVX2 and FMA (and the kernels were built),
/// else 0.
int prunekit_wide_supported(void);

/// Sum over x[0 ..< count) of x^2 (squared != 0) or |x| in float64, as `segmentSum` does:
/// eight lanes (j mod 8) added as (l0+l4 + l2+l6) + (l1+l5 + l3+l7), then the tail in order.
/// ORs (bits & 0x7F800000) + 0x00800000 of every entry into *flags (bit 31 set: some entry is
/// not finite).
double prunekit_wide_sum(const float *x, ptrdiff_t count, int squared, uint32_t *flags);

/// acc[j] += (a[j]^2 + b[j]^2) + (c[j]^2 + d[j]^2) (squared) or (|a|+|b|) + (|c|+|d|) for
/// j < count, in float64. Returns the OR of the non-finite flags (as above) of the four rows.
/// (Four rows per pass over acc: eight or sixteen, with more memory streams, measured slower.)
uint32_t prunekit_wide_column_sums4(const float *a, const float *b, const float *c, const float *d, double *acc,
                                    ptrdiff_t count, int squared);

/// One tile of the activation statistics' first pass: for j < nf, over rows r < nt in order,
/// sums[j] += x, squares[j] += x * x (rounded separately), absolute[j] += |x|, zeros[j] += (x == 0),
/// x = rows[r][j] (float64). Returns 1 when every feature's sum of squares is finite: 0 when some x
/// is not finite (or a square overflowed; the caller then looks for the value), and the sums are
/// scratch. ahead[r < na] (ahead may be NULL) are the next tile's rows, prefetched as this one runs.
int prunekit_wide_moments(const double *const *rows, ptrdiff_t nt, ptrdiff_t nf, double *sums, double *squares,
                          double *absolute, double *zeros, const double *const *ahead, ptrdiff_t na);

/// The second pass: m2[j] += d * d, d = rows[r][j] - means[j], over r < nt in order.
void prunekit_wide_deviations(const double *const *rows, ptrdiff_t nt, ptrdiff_t nf, const double *means,
                              double *m2, const double *const *ahead, ptrdiff_t na);

/// The same two kernels over float32 rows, converted to float64 as they load.
int prunekit_wide_moments_float(const float *const *rows, ptrdiff_t nt, ptrdiff_t nf, double *sums, double *squares,
                                double *absolute, double *zeros, const float *const *ahead, ptrdiff_t na);
void prunekit_wide_deviations_float(const float *const *rows, ptrdiff_t nt, ptrdiff_t nf, const double *means,
                                    double *m2, const float *const *ahead, ptrdiff_t na);

/// SparseGPT's updates inside one block of one row: for each listed (pruned) column c, in list
/// order, e = row[c] / diagonal[c], row[c] = 0, and row[j] -= e * u[j] for c < j < end, with
/// u = inverse + (c - start) * count - start (row c of the block's U_BB, indexed by column).
/// Products and differences are rounded separately, as in the baseline loop.
void prunekit_wide_obs_float(float *row, const int32_t *list, ptrdiff_t listed, const float *diagonal,
                             const float *inverse, ptrdiff_t start, ptrdiff_t end, ptrdiff_t count);
void prunekit_wide_obs_double(double *row, const int32_t *list, ptrdiff_t listed, const double *diagonal,
                              const double *inverse, ptrdiff_t start, ptrdiff_t end, ptrdiff_t count);
#endif
