/* Fused neighbourhood attention on CPU: glocal's optional compiled backend for core/neighborhood.py
 * (built and loaded by core/ckernels.py; the tiled PyTorch path computes the same thing).
 *
 * Every query attends to exactly its own neighbours, read from the table neighborhood_indices()
 * builds (any rank, kernel, dilation; NATTEN's border rule): no tile halo, so no score is computed
 * that a query does not use, and q, k, v are read in place from the joint projection.
 *
 * Layouts:
 *     qkv    [B, L, 3, h, d] contiguous      the projection: token l of sample b holds q, k, v
 *     idx    [L, K] int64                    neighbour token of each slot
 *     rel    [L, K] int64                    the slot's column in the bias table
 *     ok     [L, K] uint8                    the slot exists (a window shorter than the kernel has fewer)
 *     bias   [h, R] or NULL                  relative position bias
 *     mask   [B, L] uint8 or NULL            valid tokens
 *     out    [B, L, h, d]                    (heads side by side: the output projection's input)
 *     p      [B * h, L, K]                   the attention weights, saved for the backward
 *
 * Items are n = b * h + head. A query's neighbours belong to its own sample and head, so in the
 * backward the key and value gradients of item n come from item n's queries only: threads own
 * disjoint ranges of items and never write the same row.
 */
#include <math.h>

#include "simd.h"

static inline __attribute__((always_inline)) real dot(const real *a, const real *b, long d) {
    real s = 0;
#pragma omp simd reduction(+ : s)
    for (long i = 0; i < d; ++i) s += a[i] * b[i];
    return s;
}

static inline __attribute__((always_inline)) void axpy(real *y, real a, const real *x, long d) {
#pragma omp simd
    for (long i = 0; i < d; ++i) y[i] += a * x[i];
}

/* the slots query l attends: existing slots on valid keys; a query with no valid neighbour (a
 * padded one) attends all its existing slots instead, as the reference does */
static void allowed_slots(unsigned char *al, const long *il, const unsigned char *okl, const unsigned char *valid,
                          long K) {
    int any = 0;
    for (long j = 0; j < K; ++j) {
        al[j] = okl[j] && (!valid || valid[il[j]]);
        any |= al[j];
    }
    if (!any)
        for (long j = 0; j < K; ++j) al[j] = okl[j];
}

/* one query: scores over its allowed slots, softmax into pl, the weighted sum of values into o.
 * Always inlined, so callers can pass the head dim as a constant and get unrolled vector code. */
static inline __attribute__((always_inline)) void na_query(
        const real *q, const real *Kx, const real *V, const long *il, const long *rl, const unsigned char *al,
        const real *bh, real *s, real *pl, real *o, long row, long d, long K, long Kp, real scale) {
    real top = -INFINITY;
    for (long j = 0; j < K; ++j) {
        s[j] = al[j] ? scale * dot(q, Kx + il[j] * row, d) + (bh ? bh[rl[j]] : 0) : -INFINITY;
        top = s[j] > top ? s[j] : top;
    }
    for (long j = K; j < Kp; ++j) s[j] = -INFINITY;
    vec total = {0};
    for (long j = 0; j < Kp; j += W) {  /* softmax numerators, W slots at a time */
        vec x, e;
        memcpy(&x, s + j, sizeof(vec));
        e = vselect(x == -INFINITY, (vec){0}, vexp(x - top));  /* excluded slots: exactly 0 */
        memcpy(s + j, &e, sizeof(vec));
        total += e;
    }
    const real inv = 1 / lane_sum(total);
    memset(o, 0, sizeof(real) * d);
    for (long j = 0; j < K; ++j) {
        pl[j] = s[j] * inv;
        if (pl[j] != 0) axpy(o, pl[j], V + il[j] * row, d);
    }
}

void na_forward(const real *qkv, const long *idx, const long *rel, const unsigned char *ok, const real *bias,
                long R, const unsigned char *mask, real *out, real *p, long B, long L, long h, long d, long K,
                real scale, long lo, long hi) {
    const long Kp = (K + W - 1) / W * W, row = 3 * h * d;  /* row: from one token to the next in qkv */
    real *s = aligned_alloc(sizeof(vec), sizeof(real) * Kp);
    unsigned char *al = malloc(K);
    for (long n = lo; n < hi; ++n) {
        const long b = n / h, head = n % h;
        const real *Q = qkv + b * L * row + head * d, *Kx = Q + h * d, *V = Q + 2 * h * d;
        const real *bh = bias ? bias + head * R : NULL;
        const unsigned char *valid = mask ? mask + b * L : NULL;
        for (long l = 0; l < L; ++l) {
            const long *il = idx + l * K, *rl = rel + l * K;
            const unsigned char *use = ok + l * K;
            if (valid) {
                allowed_slots(al, il, use, valid, K);
                use = al;
            }
            const real *q = Q + l * row;
            real *pl = p + (n * L + l) * K, *o = out + ((b * L + l) * h + head) * d;
            switch (d) {  /* the usual head dims as constants */
                case 32: na_query(q, Kx, V, il, rl, use, bh, s, pl, o, row, 32, K, Kp, scale); break;
                case 64: na_query(q, Kx, V, il, rl, use, bh, s, pl, o, row, 64, K, Kp, scale); break;
                default: na_query(q, Kx, V, il, rl, use, bh, s, pl, o, row, d, K, Kp, scale);
            }
        }
    }
    free(s);
    free(al);
}

/* gqkv: zeroed by the caller, the layout of qkv (added to). gbias: this caller's partial sum [h, R]
 * (added to) or NULL. Excluded slots have p = 0 and contribute nothing. */

/* one query's gradients (see na_backward); always inlined like na_query */
static inline __attribute__((always_inline)) void na_query_backward(
        const real *q, const real *Kx, const real *V, const long *il, const long *rl, const real *pl,
        const real *go, real *gq, real *gK, real *gV, real *gbh, real *dp, long row, long d, long K, real scale) {
    real sum = 0;
    for (long j = 0; j < K; ++j) {  /* dLoss / dp_j and sum_j p_j dLoss / dp_j */
        dp[j] = pl[j] != 0 ? dot(go, V + il[j] * row, d) : 0;
        sum += pl[j] * dp[j];
    }
    for (long j = 0; j < K; ++j) {
        if (pl[j] == 0) continue;
        const real g = pl[j] * (dp[j] - sum);  /* dLoss / dscore_j */
        axpy(gq, scale * g, Kx + il[j] * row, d);
        axpy(gK + il[j] * row, scale * g, q, d);
        axpy(gV + il[j] * row, pl[j], go, d);
        if (gbh) gbh[rl[j]] += g;
    }
}

void na_backward(const real *qkv, const long *idx, const long *rel, const real *p, const real *gout, real *gqkv,
                 real *gbias, long R, long B, long L, long h, long d, long K, real scale, long lo, long hi) {
    const long row = 3 * h * d;
    real *dp = malloc(sizeof(real) * K);
    for (long n = lo; n < hi; ++n) {
        const long b = n / h, head = n % h, base = b * L * row + head * d;
        const real *Q = qkv + base, *Kx = Q + h * d, *V = Q + 2 * h * d;
        real *gQ = gqkv + base, *gK = gQ + h * d, *gV = gQ + 2 * h * d, *gbh = gbias ? gbias + head * R : NULL;
        for (long l = 0; l < L; ++l) {
            const long *il = idx + l * K, *rl = rel + l * K;
            const real *pl = p + (n * L + l) * K, *go = gout + ((b * L + l) * h + head) * d, *q = Q + l * row;
            real *gq = gQ + l * row;
            switch (d) {
                case 32: na_query_backward(q, Kx, V, il, rl, pl, go, gq, gK, gV, gbh, dp, row, 32, K, scale); break;
                case 64: na_query_backward(q, Kx, V, il, rl, pl, go, gq, gK, gV, gbh, dp, row, 64, K, scale); break;
                default: na_query_backward(q, Kx, V, il, rl, pl, go, gq, gK, gV, gbh, dp, row, d, K, scale);
            }
        }
    }
    free(dp);
}
