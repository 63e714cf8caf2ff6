/* Vector helpers shared by glocal's compiled kernels (scan_kernel.c, na_kernel.c): a `vec` of W
 * lanes of `real` (float, or double with -DREAL_DOUBLE) in GCC's vector extension, so the same code
 * compiles to whatever SIMD width -march=native gives, and an exp over the lanes. */
#ifndef GLOCAL_SIMD_H
#define GLOCAL_SIMD_H
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define W 16  /* vector lanes */

#ifdef REAL_DOUBLE
typedef double real;
typedef int64_t lane_int;
#else
typedef float real;
typedef int32_t lane_int;
#endif
typedef real vec __attribute__((vector_size(W * sizeof(real))));
typedef lane_int ivec __attribute__((vector_size(W * sizeof(lane_int))));

static inline long min_l(long a, long b) { return a < b ? a : b; }

static inline vec *vec_alloc(long n) { return aligned_alloc(sizeof(vec), sizeof(vec) * n); }

static inline vec vselect(ivec mask, vec a, vec b) {  /* a where mask, else b */
    return (vec)(((ivec)a & mask) | ((ivec)b & ~mask));
}

/* exp over the lanes: exp(x) = 2^k exp(r) with k = round(x / ln 2) and |r| <= ln(2) / 2; exp(r) by
 * its Taylor polynomial (degree 7 for float, 13 for double: about one ulp on that interval). Adding
 * `shifter` (1.5 * 2^MANT + BIAS) rounds x / ln 2 to an integer held in the low mantissa bits, so
 * shifting those bits up by MANT gives the bits of 2^k directly. Arguments are clamped to the
 * normal range: below it the result is the smallest normal number instead of a denormal or 0, an
 * absolute difference under 1e-37 (1e-307 in double). */
static inline vec vexp(vec x) {
#ifdef REAL_DOUBLE
    enum { ORDER = 13, MANT = 52 };
    const real lo = -708.0, hi = 709.0, shifter = 6755399441055744.0 + 1023;
    const real ln2_hi = 0.693147180369123816490, ln2_lo = 1.90821492927058770002e-10;
#else
    enum { ORDER = 7, MANT = 23 };
    const real lo = -87.3f, hi = 88.7f, shifter = 12582912.0f + 127;
    const real ln2_hi = 0.693145751953125f, ln2_lo = 1.428606765330187045e-06f;
#endif
    static const real inv_fact[14] = {1.0, 1.0, 1.0 / 2, 1.0 / 6, 1.0 / 24, 1.0 / 120, 1.0 / 720, 1.0 / 5040,
                                      1.0 / 40320, 1.0 / 362880, 1.0 / 3628800, 1.0 / 39916800,
                                      1.0 / 479001600, 1.0 / 6227020800};
    x = vselect(x < lo, (vec){0} + lo, x);
    x = vselect(x > hi, (vec){0} + hi, x);
    vec j = x * (real)1.44269504088896340736 + shifter;
    vec k = j - shifter;  /* round(x / ln 2) */
    vec r = x - k * ln2_hi - k * ln2_lo;
    vec p = (vec){0} + inv_fact[ORDER];
    for (int i = ORDER - 1; i >= 0; --i) p = p * r + inv_fact[i];  /* Horner */
    return p * (vec)((ivec)j << MANT);
}

static inline vec load(const real *p, long nv) {  /* nv lanes from p, the rest 0 */
    vec v = {0};
    if (nv == W)
        memcpy(&v, p, sizeof(vec));  /* constant size: one unaligned vector load */
    else
        memcpy(&v, p, sizeof(real) * nv);
    return v;
}

static inline void store(real *p, vec v, long nv) {
    if (nv == W)
        memcpy(p, &v, sizeof(vec));
    else
        memcpy(p, &v, sizeof(real) * nv);
}

static inline real lane_sum(vec v) {
    real s = 0;
    for (int i = 0; i < W; ++i) s += v[i];
    return s;
}

#endif
