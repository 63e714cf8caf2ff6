/* The fused CPU selective scan: glocal's optional compiled backend for core/ssm.py.
 *
 * core/scan_kernel.py compiles this file on first use (for float, and with -DREAL_DOUBLE for double)
 * and calls it through ctypes; when no C compiler is present glocal runs the pure-PyTorch chunked
 * scan, which computes the same thing with the same chunk structure (core/ssm.py has the maths).
 *
 *     h_t = exp(dt_t * A) * h_{t-1} + x_t * B_t        (x = dt * u; per channel d, state n)
 *     y_t = C_t . h_t
 *
 * Layouts (element strides; the channel stride of x, dt and gy is 1):
 *     x, dt, gy   [L, B, D] with strides (st, sb, 1)      D = G * Dg channels in G groups
 *     A_t         [G, N, Dg] contiguous                   A transposed per group
 *     Bm, Cm      [L, B, G, N] contiguous                 group g serves channels g*Dg .. g*Dg+Dg-1
 *     y, gx, gdt  [L, B, D] contiguous
 *     hs          [ceil(L / T), B, G, N, Dg] contiguous   the state entering each chunk of T steps
 *
 * Work is split into items: (batch b, group g, a block of W channels), numbered b-major; one call
 * runs items [lo, hi), so the caller can run disjoint ranges on several threads. A block's W
 * channels are the lanes of one `vec` (simd.h), so every operation below is a vector operation
 * whatever the target's SIMD width; the block's state [N] x vec stays in L1. A partial block (fewer
 * than W channels left in a group) pads its lanes with dt = x = A = gy = 0, which keeps them at zero.
 *
 * The backward mirrors the pure-PyTorch one: per chunk, from the saved state at its start,
 * recompute the states and decays into small buffers, then run the adjoint recurrence backwards
 *     lam_t = C_t gy_t + exp(dt_{t+1} A) lam_{t+1}
 * and read every gradient off (lam_t, h_{t-1}, exp(dt_t A)) in the same sweep.
 */
#include "simd.h"

typedef struct {
    long b, g, k0, nv, d0;  /* batch, group, first channel in the group, channels, first channel overall */
} item_t;

static item_t item_at(long it, long G, long Dg) {
    long nblk = (Dg + W - 1) / W;
    item_t r;
    r.b = it / (G * nblk);
    r.g = it / nblk % G;
    r.k0 = it % nblk * W;
    r.nv = min_l(W, Dg - r.k0);
    r.d0 = r.g * Dg + r.k0;
    return r;
}

long scan_items(long B, long G, long Dg) { return B * G * ((Dg + W - 1) / W); }

/* the block's columns of A [N, Dg], as N vectors */
static void load_A(vec *A, const real *A_t, item_t r, long N, long Dg) {
    for (long n = 0; n < N; ++n) A[n] = load(A_t + (r.g * N + n) * Dg + r.k0, r.nv);
}

void scan_forward(const real *x, long sxt, long sxb, const real *dt, long sdt, long sdb,
                  const real *A_t, const real *Bm, const real *Cm, real *y, real *hs,
                  long L, long B, long G, long N, long Dg, long T, long lo, long hi) {
    /* time outermost, items innermost: a step reads one contiguous stretch of each row of x and
     * dt (and writes one of y) instead of hopping a row per step through every item in turn */
    long D = G * Dg, n_items = hi - lo;
    vec *A = vec_alloc(n_items * N), *h = vec_alloc(n_items * N);
    item_t *items = malloc(sizeof(item_t) * n_items);
    for (long i = 0; i < n_items; ++i) {
        items[i] = item_at(lo + i, G, Dg);
        load_A(A + i * N, A_t, items[i], N, Dg);
    }
    memset(h, 0, sizeof(vec) * n_items * N);
    for (long t = 0; t < L; ++t) {
        for (long i = 0; i < n_items; ++i) {
            const item_t r = items[i];
            const vec *Ai = A + i * N;
            vec *hi_ = h + i * N;
            if (t % T == 0) {  /* checkpoint the state entering the chunk */
                real *hc = hs + (((t / T) * B + r.b) * G + r.g) * N * Dg + r.k0;
                for (long n = 0; n < N; ++n) store(hc + n * Dg, hi_[n], r.nv);
            }
            const vec dtt = load(dt + t * sdt + r.b * sdb + r.d0, r.nv), xt = load(x + t * sxt + r.b * sxb + r.d0, r.nv);
            const real *Bt = Bm + ((t * B + r.b) * G + r.g) * N, *Ct = Cm + ((t * B + r.b) * G + r.g) * N;
            vec yt = {0};
            for (long n = 0; n < N; ++n) {
                hi_[n] = vexp(dtt * Ai[n]) * hi_[n] + xt * Bt[n];
                yt += Ct[n] * hi_[n];
            }
            store(y + (t * B + r.b) * D + r.d0, yt, r.nv);
        }
    }
    free(A);
    free(h);
    free(items);
}

/* adds the lane sums of sumB / sumC to one row of gB / gC, and zeroes them */
static void flush_sums(real *gB, real *gC, vec *sumB, vec *sumC, long N) {
    for (long n = 0; n < N; ++n) {
        gB[n] += lane_sum(sumB[n]);
        gC[n] += lane_sum(sumC[n]);
    }
    memset(sumB, 0, sizeof(vec) * N);
    memset(sumC, 0, sizeof(vec) * N);
}

/* gx, gdt: written. gB, gC ([L, B, G, N]) and gA ([G, N, Dg]): this caller's partial sums, added to.
 * Loop order as in the forward: per chunk (last first), steps outside, items inside. */
void scan_backward(const real *x, long sxt, long sxb, const real *dt, long sdt, long sdb,
                   const real *A_t, const real *Bm, const real *Cm, const real *gy, long sgt, long sgb,
                   const real *hs, real *gx, real *gdt, real *gB, real *gC, real *gA,
                   long L, long B, long G, long N, long Dg, long T, long lo, long hi) {
    long D = G * Dg, n_items = hi - lo, IN = n_items * N;
    vec *A = vec_alloc(IN), *lam = vec_alloc(IN), *gAv = vec_alloc(IN), *sumB = vec_alloc(N), *sumC = vec_alloc(N);
    vec *hbuf = vec_alloc((T + 1) * IN);  /* [T + 1, items, N]: h_{s-1}, h_s, ..., h_{s+T-1} of a chunk */
    vec *dAbuf = vec_alloc(T * IN);       /* [T, items, N]: exp(dt_t A) over the chunk */
    item_t *items = malloc(sizeof(item_t) * n_items);
    for (long i = 0; i < n_items; ++i) {
        items[i] = item_at(lo + i, G, Dg);
        load_A(A + i * N, A_t, items[i], N, Dg);
    }
    memset(sumB, 0, sizeof(vec) * N);
    memset(sumC, 0, sizeof(vec) * N);
    memset(lam, 0, sizeof(vec) * IN);  /* carries exp(dt_s A) lam_s into the previous chunk */
    memset(gAv, 0, sizeof(vec) * IN);
    for (long c = (L + T - 1) / T - 1; c >= 0; --c) {
        long s = c * T, nt = min_l(T, L - s);
        for (long i = 0; i < n_items; ++i) {
            const item_t r = items[i];
            const real *hc = hs + ((c * B + r.b) * G + r.g) * N * Dg + r.k0;
            for (long n = 0; n < N; ++n) hbuf[i * N + n] = load(hc + n * Dg, r.nv);
        }
        for (long j = 0; j < nt; ++j) {  /* recompute the chunk's decays and states */
            long t = s + j;
            for (long i = 0; i < n_items; ++i) {
                const item_t r = items[i];
                const vec dtt = load(dt + t * sdt + r.b * sdb + r.d0, r.nv);
                const vec xt = load(x + t * sxt + r.b * sxb + r.d0, r.nv);
                const real *Bt = Bm + ((t * B + r.b) * G + r.g) * N;
                const vec *Ai = A + i * N, *hp = hbuf + j * IN + i * N;
                vec *hn = hbuf + (j + 1) * IN + i * N, *dA = dAbuf + j * IN + i * N;
                for (long n = 0; n < N; ++n) {
                    dA[n] = vexp(dtt * Ai[n]);
                    hn[n] = dA[n] * hp[n] + xt * Bt[n];
                }
            }
        }
        for (long j = nt - 1; j >= 0; --j) {  /* the adjoint, backwards through the chunk */
            long t = s + j, open_bc = -1;  /* the (t, b, g) row of gB / gC being summed over items */
            for (long i = 0; i < n_items; ++i) {
                const item_t r = items[i];
                const long bc = ((t * B + r.b) * G + r.g) * N;
                if (bc != open_bc) {  /* items run b-major, then g: a row's items are consecutive */
                    if (open_bc >= 0) flush_sums(gB + open_bc, gC + open_bc, sumB, sumC, N);
                    open_bc = bc;
                }
                const vec dtt = load(dt + t * sdt + r.b * sdb + r.d0, r.nv);
                const vec xt = load(x + t * sxt + r.b * sxb + r.d0, r.nv);
                const vec gyt = load(gy + t * sgt + r.b * sgb + r.d0, r.nv);
                const vec *Ai = A + i * N, *hp = hbuf + j * IN + i * N, *hn = hp + IN, *dA = dAbuf + j * IN + i * N;
                vec *li = lam + i * N, *gAi = gAv + i * N;
                vec gxt = {0}, gdtt = {0};
                for (long n = 0; n < N; ++n) {
                    vec l = li[n] + Cm[bc + n] * gyt;   /* lam_t */
                    vec q = l * dA[n] * hp[n];          /* dLoss / d(dt_t A) */
                    sumC[n] += gyt * hn[n];             /* sum_d gy h, per lane for now */
                    sumB[n] += l * xt;                  /* sum_d lam x */
                    gxt += l * Bm[bc + n];              /* sum_n lam B */
                    gdtt += Ai[n] * q;                  /* sum_n A q */
                    gAi[n] += dtt * q;                  /* sum_{t, b} dt q */
                    li[n] = l * dA[n];                  /* exp(dt_t A) lam_t, for step t - 1 */
                }
                store(gx + (t * B + r.b) * D + r.d0, gxt, r.nv);
                store(gdt + (t * B + r.b) * D + r.d0, gdtt, r.nv);
            }
            flush_sums(gB + open_bc, gC + open_bc, sumB, sumC, N);
        }
    }
    for (long i = 0; i < n_items; ++i) {
        const item_t r = items[i];
        for (long n = 0; n < N; ++n) {
            real *gan = gA + (r.g * N + n) * Dg + r.k0;
            for (long v = 0; v < r.nv; ++v) gan[v] += gAv[i * N + n][v];
        }
    }
    free(sumB);
    free(sumC);
    free(A);
    free(lam);
    free(gAv);
    free(hbuf);
    free(dAbuf);
    free(items);
}
