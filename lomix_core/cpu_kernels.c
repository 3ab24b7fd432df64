/* CE + soft-Dice of a stack of maps, one pass over the logits forward and one backward.
 *
 * z is [M, B, C, HW] float32 with strides (sm, sb, sc, 1), so a permuted stack needs no copy;
 * target [B, HW] int32; the gradient is written with z's strides. A block of T pixels of one map
 * is read once:
 * its softmax stays in a small buffer while the per-class sums are taken, so nothing of the size
 * of the stack is written forward, and the backward writes only the gradient. The formulas are
 * those of lomix_core/map_loss.py (the closed-form gradient is derived there). Vectorised by the
 * compiler across the T pixels of a block: every inner loop runs over contiguous pixels.
 * Each call handles maps [m0, m1), so the caller can split the stack across threads.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define T 256

/* Subnormal results flushed to 0 and subnormal inputs read as 0 for the length of a call: this
 * thread's MXCSR, set on entry and restored on return, so the process's flags stay untouched. A
 * probability near exp(EXP_FLOOR) times a small Dice coefficient is subnormal, and x86 computes
 * with subnormals through a microcode assist that doubled the mul mutants' backward with trained
 * logits. Flushing moves a value by less than 1.2e-38. */
#if defined(__SSE__)
#include <xmmintrin.h>
static unsigned subnormals_off(void) {
    const unsigned saved = _mm_getcsr();
    _mm_setcsr(saved | 0x8040); /* FTZ | DAZ */
    return saved;
}
static int restored(unsigned saved, int status) {
    _mm_setcsr(saved);
    return status;
}
#else
static unsigned subnormals_off(void) { return 0; }
static int restored(unsigned saved, int status) { (void)saved; return status; }
#endif

/* exp's argument is held at or above this. Below it the result is subnormal or 0: exp_nonpositive
 * below cannot write its 2^n into the exponent bits, and libm's vectorised expf left such values to
 * a scalar slow path that, with trained logits (a mul mutant of four maps spans thousands), took 10x
 * the time of the whole operator. The held value adds at most 1.6e-38 to a probability, nothing
 * next to the sum of e_c, which is at least 1. */
#define EXP_FLOOR (-87.0f)

/* -ffast-math lets the compiler assume no NaN or inf, so a NaN logit could vanish in a max. The
 * kernels look for them in the exponent bits instead (integer arithmetic, which no flag changes),
 * and a block that holds one makes the loss and its gradient NaN. The loss's value checks reject
 * such logits first; with the checks off, a NaN must still not vanish. */
static inline uint32_t is_nonfinite(float z) {
    uint32_t bits;
    memcpy(&bits, &z, sizeof bits);
    return (bits & 0x7f800000u) == 0x7f800000u;
}
static inline double not_a_number(void) {
    const uint64_t bits = 0x7ff8000000000000ull;
    double nan;
    memcpy(&nan, &bits, sizeof nan);
    return nan;
}

/* exp(x) for x in [EXP_FLOOR, 0]: x = n ln2 + r with |r| <= ln2 / 2, exp(r) by Cephes' expf
 * polynomial (relative error 1.5e-7, about 1 ulp), 2^n put straight into the exponent bits. Plain
 * arithmetic, so the compiler inlines and vectorises it with the loop around it, where libm's
 * vectorised expf is a call per 8 or 16 values. */
static inline float exp_nonpositive(float x) {
    const float n = floorf(x * 1.44269504088896341f + 0.5f);
    const float r = (x - n * 0.693359375f) + n * 2.12194440e-4f; /* ln 2 in two parts, exact product first */
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    const uint32_t bits = (uint32_t)((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* Per pixel t of the block: the row maximum, and e_c = exp(z_c - max) with their sum. Returns
 * whether the block holds a NaN or inf logit. */
static uint32_t softmax_block(const float *zb, int64_t C, int64_t sc, int64_t n,
                              float *e, float *mx, float *sum) {
    uint32_t nonfinite = 0;
    for (int64_t t = 0; t < n; ++t) mx[t] = zb[t];
    for (int64_t c = 0; c < C; ++c)
        for (int64_t t = 0; t < n; ++t) {
            const float z = zb[c * sc + t];
            mx[t] = fmaxf(mx[t], z);
            nonfinite |= is_nonfinite(z);
        }
    for (int64_t t = 0; t < n; ++t) sum[t] = 0.0f;
    for (int64_t c = 0; c < C; ++c)
        for (int64_t t = 0; t < n; ++t) {
            float v = exp_nonpositive(fmaxf(zb[c * sc + t] - mx[t], EXP_FLOOR));
            e[c * T + t] = v;
            sum[t] += v;
        }
    return nonfinite;
}

/* One block of n pixels of one map: adds Σ -log p_y to *ce, Σ p_c [y = c] to I[c] and Σ p_c² to
 * Q[c]. zb points at the block's first pixel of class 0, class planes sc apart; y at its labels. */
static void stats_block(const float *zb, int64_t sc, const int32_t *y, int64_t n, int64_t C, float *e,
                        double *ce, double *I, double *Q) {
    float mx[T], sum[T], zy[T]; /* zy: z_y - max, taken before anything is added to the large max */
    if (softmax_block(zb, C, sc, n, e, mx, sum)) *ce += not_a_number();
    for (int64_t t = 0; t < n; ++t) zy[t] = 0.0f;
    for (int64_t c = 0; c < C; ++c)
        for (int64_t t = 0; t < n; ++t) zy[t] += y[t] == (int32_t)c ? zb[c * sc + t] - mx[t] : 0.0f;
    float block_ce = 0.0f;
    for (int64_t t = 0; t < n; ++t) {
        block_ce += logf(sum[t]) - zy[t];
        sum[t] = 1.0f / sum[t];
    }
    *ce += block_ce;
    for (int64_t c = 0; c < C; ++c) {
        float q = 0.0f, i = 0.0f;
        for (int64_t t = 0; t < n; ++t) {
            float p = e[c * T + t] * sum[t];
            q += p * p;
            i += y[t] == (int32_t)c ? p : 0.0f;
        }
        Q[c] += q;
        I[c] += i;
    }
}

/* The gradient of one block of one map into gb (class planes gsc apart): p_c (d_c - s) + a (p_c - [y = c])
 * with d_c = G[c] p_c - Bt[c] [y = c] and s = Σ_c p_c d_c. e is [C, T] scratch. */
static void grad_block(const float *zb, int64_t sc, const int32_t *y, int64_t n, int64_t C, float am,
                       const float *G, const float *Bt, float *restrict e, float *gb, int64_t gsc) {
    float mx[T], sum[T], s[T];
    if (softmax_block(zb, C, sc, n, e, mx, sum)) {
        for (int64_t c = 0; c < C; ++c)
            for (int64_t t = 0; t < n; ++t) gb[c * gsc + t] = (float)not_a_number();
        return;
    }
    for (int64_t t = 0; t < n; ++t) {
        sum[t] = 1.0f / sum[t];
        s[t] = 0.0f;
    }
    /* d_c is formed twice rather than stored: an FMA costs less than a store and a load */
    for (int64_t c = 0; c < C; ++c) {
        const float g = G[c], beta_c = Bt[c];
        float *restrict ec = e + c * T;
        for (int64_t t = 0; t < n; ++t) {
            float p = ec[t] * sum[t];
            ec[t] = p;
            s[t] += p * (g * p - (y[t] == (int32_t)c ? beta_c : 0.0f));
        }
    }
    for (int64_t c = 0; c < C; ++c) {
        const float g = G[c], beta_c = Bt[c];
        for (int64_t t = 0; t < n; ++t) {
            const float p = e[c * T + t];
            const int is_y = y[t] == (int32_t)c;
            const float dp = g * p - (is_y ? beta_c : 0.0f);
            gb[c * gsc + t] = p * (dp - s[t]) + am * (p - (is_y ? 1.0f : 0.0f));
        }
    }
}

/* ce[m] = Σ -log p_y, inter[m,c] = Σ p_c [y = c], psq[m,c] = Σ p_c², over all B·HW pixels
 * (double accumulators, written, not added to). */
int lomix_ce_dice_forward(const float *z, const int32_t *target, int64_t B, int64_t C, int64_t HW,
                          int64_t sm, int64_t sb, int64_t sc, int64_t m0, int64_t m1, double *ce, double *inter, double *psq) {
    const unsigned csr = subnormals_off();
    float *e = malloc(sizeof(float) * C * T);
    if (!e) return restored(csr, 1);
    for (int64_t m = m0; m < m1; ++m) {
        double ce_m = 0.0, *I = inter + m * C, *Q = psq + m * C;
        for (int64_t c = 0; c < C; ++c) I[c] = Q[c] = 0.0;
        for (int64_t b = 0; b < B; ++b)
            for (int64_t h0 = 0; h0 < HW; h0 += T)
                stats_block(z + m * sm + b * sb + h0, sc, target + b * HW + h0, HW - h0 < T ? HW - h0 : T, C, e,
                            &ce_m, I, Q);
        ce[m] = ce_m;
    }
    free(e);
    return restored(csr, 0);
}

/* grad[m,b,c,x] = p_c (d_c - s) + a_m (p_c - [y = c]) with d_c = gamma[m,c] p_c - beta[m,c] [y = c]
 * and s = Σ_c p_c d_c: the gradient of Σ_m g_m L_m, the upstream g_m folded into a, gamma, beta. */
int lomix_ce_dice_backward(const float *z, const int32_t *target, int64_t B, int64_t C, int64_t HW,
                           int64_t sm, int64_t sb, int64_t sc, int64_t m0, int64_t m1, const float *a, const float *gamma, const float *beta,
                           float *grad) {
    const unsigned csr = subnormals_off();
    float *e = malloc(sizeof(float) * C * T);
    if (!e) return restored(csr, 1);
    for (int64_t m = m0; m < m1; ++m)
        for (int64_t b = 0; b < B; ++b)
            for (int64_t h0 = 0; h0 < HW; h0 += T)
                grad_block(z + m * sm + b * sb + h0, sc, target + b * HW + h0, HW - h0 < T ? HW - h0 : T, C, a[m],
                           gamma + m * C, beta + m * C, e, grad + m * sm + b * sb + h0, sc);
    free(e);
    return restored(csr, 0);
}

/* ---- Every supervised map, fused: CE + Dice statistics and gradient without writing a mutant. ----
 *
 * The N decoder maps are separate tensors x[n], each [B, C, HW]; the R maps originals[] are
 * supervised as they are and come first in the loss order. Subset s has the maps with
 * member[s,n] = 1 (in increasing n); mutant k S + s (loss R + k S + s) is operator ops[k] (0 add,
 * 1 mul, 2 concat, 3 wf) on subset s. For one block of T pixels of one image, each original is
 * read in place and each mutant in turn built in a [C, T] buffer that stays in cache; its
 * statistics are taken (forward), or its gradient formed and pushed back through the operator to
 * the maps and the operators' parameters (backward), into a block of the maps' gradient that is
 * written out once. Formulas: lomix_core/fusion.py (operators), lomix_core/map_loss.py (CE + Dice
 * and their gradient); names as there. */
#define MAX_MAPS 16

typedef struct {
    int64_t N, B, C, HW, S, K, R;
    const float *x[MAX_MAPS]; /* map n: [B, C, HW] */
    float *dx[MAX_MAPS];      /* its gradient, laid out alike (backward only) */
    const int64_t *originals; /* [R] */
    const int32_t *ops;       /* [K] */
    const uint8_t *member;    /* [S, N] */
    const float *cw, *cb;     /* concat: weight [S, N, C_out, C_in] (0 off the members), bias [S, C] */
    const float *ww, *wb;     /* wf: scorer weight [S, N, C], bias [S, N] */
} lomix_mutants;

enum { OP_ADD = 0, OP_MUL = 1, OP_CONCAT = 2, OP_WF = 3 };

static int members_of(const lomix_mutants *p, int64_t s, int64_t *mem) {
    int k = 0;
    for (int64_t n = 0; n < p->N; ++n)
        if (p->member[s * p->N + n]) mem[k++] = (int)n;
    return k;
}

/* A run of VW floats in one register: 16 where the processor has AVX-512, else 8 (one AVX
 * register, or two SSE ones). concat's and wf's loops keep the partial sums of a run of pixels in
 * these while each input row is read once; a loop over pixels alone loads and stores its output
 * for every multiply-add. */
#if defined(__AVX512F__)
#define VW 16
#else
#define VW 8
#endif
typedef float vec __attribute__((vector_size(VW * sizeof(float))));
static inline vec vec_load(const float *ptr) {
    vec v;
    memcpy(&v, ptr, sizeof v);
    return v;
}
static inline void vec_store(float *ptr, vec v) { memcpy(ptr, &v, sizeof v); }
static inline float vec_sum(vec v) {
    float sum = 0.0f;
    for (int k = 0; k < VW; ++k) sum += v[k];
    return sum;
}
#define ROWS 8 /* concat's output classes per register block */

/* concat, output rows [o0, o0 + rows): out[o] = b[o] + Σ_i W_i[o, :] · x_i over the cnt members,
 * W_i = w[i] ([C_out, C_in]), x_i = xm[i] (class planes HW apart). rows is a constant at each call,
 * so the accumulators unroll into registers. */
static inline __attribute__((always_inline)) void concat_rows(const float *const *w, const float *bias,
                                                             const float *const *xm, int cnt, int64_t C,
                                                             int64_t HW, int64_t n, int64_t o0, int rows,
                                                             float *restrict out) {
    int64_t t = 0;
    for (; t + VW <= n; t += VW) {
        vec acc[ROWS];
        for (int q = 0; q < rows; ++q) acc[q] = (vec){0} + bias[o0 + q];
        for (int i = 0; i < cnt; ++i)
            for (int64_t c = 0; c < C; ++c) {
                const vec xv = vec_load(xm[i] + c * HW + t);
                for (int q = 0; q < rows; ++q) acc[q] += w[i][(o0 + q) * C + c] * xv;
            }
        for (int q = 0; q < rows; ++q) vec_store(out + (o0 + q) * T + t, acc[q]);
    }
    for (; t < n; ++t)
        for (int q = 0; q < rows; ++q) {
            float acc = bias[o0 + q];
            for (int i = 0; i < cnt; ++i)
                for (int64_t c = 0; c < C; ++c) acc += w[i][(o0 + q) * C + c] * xm[i][c * HW + t];
            out[(o0 + q) * T + t] = acc;
        }
}

/* concat's backward through one member for the upstream rows [o0, o0 + rows) of g ([C, T]):
 * dx[c] += Σ_o W[o, c] g[o] and dW[o, c] += Σ_t g[o] x[c] (W, dW: the member's [C_out, C_in]). */
static inline __attribute__((always_inline)) void concat_rows_backward(const float *w, const float *x, int64_t C,
                                                                      int64_t HW, const float *g, int64_t n,
                                                                      int64_t o0, int rows, float *dx, double *dw) {
    for (int64_t c = 0; c < C; ++c) {
        const float *xc = x + c * HW;
        float *restrict dxc = dx + c * T;
        vec acc[ROWS];
        for (int q = 0; q < rows; ++q) acc[q] = (vec){0};
        int64_t t = 0;
        for (; t + VW <= n; t += VW) {
            const vec xv = vec_load(xc + t);
            vec dv = vec_load(dxc + t);
            for (int q = 0; q < rows; ++q) {
                const vec gv = vec_load(g + (o0 + q) * T + t);
                dv += w[(o0 + q) * C + c] * gv;
                acc[q] += gv * xv;
            }
            vec_store(dxc + t, dv);
        }
        float tail[ROWS] = {0};
        for (; t < n; ++t)
            for (int q = 0; q < rows; ++q) {
                dxc[t] += w[(o0 + q) * C + c] * g[(o0 + q) * T + t];
                tail[q] += g[(o0 + q) * T + t] * xc[t];
            }
        for (int q = 0; q < rows; ++q) dw[(o0 + q) * C + c] += vec_sum(acc[q]) + tail[q];
    }
}

/* Builds one mutant (operator op, subset s) of one block into out [C, T]; a wf mutant's attention
 * goes to alpha [N, T] (member j's in row j). xb[n] points at map n's block (image b, pixel h0). */
static void build_mutant(const lomix_mutants *p, const float *const *xb, int64_t n, int32_t op, int64_t s,
                         float *restrict out, float *restrict alpha) {
    const int64_t N = p->N, C = p->C, cs = p->HW; /* class stride */
    int64_t mem[MAX_MAPS];
    const int cnt = members_of(p, s, mem);
    switch (op) {
    case OP_ADD:
    case OP_MUL:
        for (int64_t c = 0; c < C; ++c) {
            float *restrict o = out + c * T;
            const float *x0 = xb[mem[0]] + c * cs;
            for (int64_t t = 0; t < n; ++t) o[t] = x0[t];
            for (int i = 1; i < cnt; ++i) {
                const float *xi = xb[mem[i]] + c * cs;
                if (op == OP_ADD)
                    for (int64_t t = 0; t < n; ++t) o[t] += xi[t];
                else
                    for (int64_t t = 0; t < n; ++t) o[t] *= xi[t];
            }
        }
        break;
    case OP_CONCAT: {
        const float *w[MAX_MAPS], *xm[MAX_MAPS];
        for (int i = 0; i < cnt; ++i) {
            w[i] = p->cw + (s * N + mem[i]) * C * C;
            xm[i] = xb[mem[i]];
        }
        int64_t o0 = 0;
        for (; o0 + ROWS <= C; o0 += ROWS) concat_rows(w, p->cb + s * C, xm, cnt, C, cs, n, o0, ROWS, out);
        for (; o0 < C; ++o0) concat_rows(w, p->cb + s * C, xm, cnt, C, cs, n, o0, 1, out);
        break;
    }
    case OP_WF: {
        /* The attention in double: the scorers' gradients are sums over pixels of terms that cancel
         * (see lomix_core/fused_mutants.py), so they need α to better than fp32. */
        double score[MAX_MAPS][T], mx[T], sum[T];
        for (int i = 0; i < cnt; ++i) {
            const int64_t j = mem[i];
            const float bias = p->wb[s * N + j];
            for (int64_t t = 0; t < n; ++t) score[i][t] = bias;
            for (int64_t c = 0; c < C; ++c) {
                const float w = p->ww[(s * N + j) * C + c];
                const float *xc = xb[j] + c * cs;
                for (int64_t t = 0; t < n; ++t) score[i][t] += (double)w * xc[t];
            }
            for (int64_t t = 0; t < n; ++t) mx[t] = i ? fmax(mx[t], score[i][t]) : score[i][t];
        }
        for (int64_t t = 0; t < n; ++t) sum[t] = 0.0;
        for (int i = 0; i < cnt; ++i)
            for (int64_t t = 0; t < n; ++t) {
                score[i][t] = exp(score[i][t] - mx[t]);
                sum[t] += score[i][t];
            }
        for (int i = 0; i < cnt; ++i) {
            float *restrict aj = alpha + mem[i] * T;
            for (int64_t t = 0; t < n; ++t) aj[t] = (float)(score[i][t] / sum[t]);
        }
        /* out[c] = Σ_i α_i x_i[c], the sum of a run of VW pixels in a register (a plain loop over
         * pixels here was turned into gathers by the compiler). */
        const float *a[MAX_MAPS], *x[MAX_MAPS];
        for (int i = 0; i < cnt; ++i) {
            a[i] = alpha + mem[i] * T;
            x[i] = xb[mem[i]];
        }
        for (int64_t c = 0; c < C; ++c) {
            int64_t t = 0;
            for (; t + VW <= n; t += VW) {
                vec acc = vec_load(a[0] + t) * vec_load(x[0] + c * cs + t);
                for (int i = 1; i < cnt; ++i) acc += vec_load(a[i] + t) * vec_load(x[i] + c * cs + t);
                vec_store(out + c * T + t, acc);
            }
            for (; t < n; ++t) {
                float acc = a[0][t] * x[0][c * cs + t];
                for (int i = 1; i < cnt; ++i) acc += a[i][t] * x[i][c * cs + t];
                out[c * T + t] = acc;
            }
        }
        break;
    }
    }
}

/* Images [b0, b1): adds each supervised map's Σ -log p_y to ce [R + K S], Σ p_c [y = c] to inter
 * [R + K S, C] and Σ p_c² to psq (the caller gives each thread its own, zeroed). */
int lomix_mutants_forward(const lomix_mutants *p, const int32_t *target, int64_t b0, int64_t b1, double *ce,
                          double *inter, double *psq) {
    const unsigned csr = subnormals_off();
    const int64_t C = p->C, R = p->R, HW = p->HW;
    float *mut = malloc(sizeof(float) * C * T), *alpha = malloc(sizeof(float) * p->N * T),
          *e = malloc(sizeof(float) * C * T);
    int status = !mut || !alpha || !e;
    for (int64_t b = b0; b < b1 && !status; ++b)
        for (int64_t h0 = 0; h0 < HW; h0 += T) {
            const int64_t n = HW - h0 < T ? HW - h0 : T;
            const int32_t *y = target + b * HW + h0;
            const float *xb[MAX_MAPS];
            for (int64_t j = 0; j < p->N; ++j) xb[j] = p->x[j] + b * C * HW + h0;
            for (int64_t r = 0; r < R; ++r)
                stats_block(xb[p->originals[r]], HW, y, n, C, e, ce + r, inter + r * C, psq + r * C);
            for (int64_t m = 0; m < p->K * p->S; ++m) {
                build_mutant(p, xb, n, p->ops[m / p->S], m % p->S, mut, alpha);
                stats_block(mut, T, y, n, C, e, ce + R + m, inter + (R + m) * C, psq + (R + m) * C);
            }
        }
    free(mut);
    free(alpha);
    free(e);
    return restored(csr, status);
}

/* Images [b0, b1): writes these images' blocks of every map's gradient p->dx and adds the
 * parameters' gradients to d_cw, d_cb, d_ww, d_wb (double, the caller gives each thread its own,
 * zeroed; unused operators' may be NULL). a [R + K S], gamma, beta [R + K S, C]: the folded
 * coefficients. */
int lomix_mutants_backward(const lomix_mutants *p, const int32_t *target, int64_t b0, int64_t b1, const float *a,
                           const float *gamma, const float *beta, double *d_cw, double *d_cb, double *d_ww,
                           double *d_wb) {
    const unsigned csr = subnormals_off();
    const int64_t N = p->N, C = p->C, S = p->S, R = p->R, HW = p->HW, cs = HW;
    float *mut = malloc(sizeof(float) * C * T), *alpha = malloc(sizeof(float) * N * T),
          *e = malloc(sizeof(float) * C * T), *dx = malloc(sizeof(float) * N * C * T),
          *gm = malloc(sizeof(float) * C * T);
    int status = !mut || !alpha || !e || !dx || !gm;
    int64_t mem[MAX_MAPS];
    for (int64_t b = b0; b < b1 && !status; ++b)
        for (int64_t h0 = 0; h0 < HW; h0 += T) {
            const int64_t n = HW - h0 < T ? HW - h0 : T;
            const int32_t *y = target + b * HW + h0;
            const float *xb[MAX_MAPS];
            for (int64_t j = 0; j < N; ++j) xb[j] = p->x[j] + b * C * HW + h0;
            /* An original's gradient is the first to reach its map's block, so it is written there
             * directly; the blocks of maps that are not supervised themselves start at 0. */
            uint8_t written[MAX_MAPS] = {0};
            for (int64_t r = 0; r < R; ++r) {
                const int64_t j = p->originals[r];
                grad_block(xb[j], cs, y, n, C, a[r], gamma + r * C, beta + r * C, e, dx + j * C * T, T);
                written[j] = 1;
            }
            for (int64_t j = 0; j < N; ++j)
                if (!written[j]) memset(dx + j * C * T, 0, sizeof(float) * C * T);
            float *restrict g = gm;
            for (int64_t k = 0; k < p->K; ++k)
                for (int64_t s = 0; s < S; ++s) {
                    const int64_t m = R + k * S + s;
                    const int cnt = members_of(p, s, mem);
                    build_mutant(p, xb, n, p->ops[k], s, mut, alpha);
                    grad_block(mut, T, y, n, C, a[m], gamma + m * C, beta + m * C, e, g, T);
                    switch (p->ops[k]) {
                    case OP_ADD:
                        for (int i = 0; i < cnt; ++i)
                            for (int64_t c = 0; c < C; ++c) {
                                float *restrict dxc = dx + (mem[i] * C + c) * T;
                                for (int64_t t = 0; t < n; ++t) dxc[t] += g[c * T + t];
                            }
                        break;
                    case OP_MUL:
                        for (int i = 0; i < cnt; ++i)
                            for (int64_t c = 0; c < C; ++c) {
                                float other[T];
                                for (int64_t t = 0; t < n; ++t) other[t] = g[c * T + t];
                                for (int i2 = 0; i2 < cnt; ++i2) {
                                    if (i2 == i) continue;
                                    const float *xc = xb[mem[i2]] + c * cs;
                                    for (int64_t t = 0; t < n; ++t) other[t] *= xc[t];
                                }
                                float *restrict dxc = dx + (mem[i] * C + c) * T;
                                for (int64_t t = 0; t < n; ++t) dxc[t] += other[t];
                            }
                        break;
                    case OP_CONCAT:
                        for (int64_t o = 0; o < C; ++o) {
                            float acc = 0.0f;
                            for (int64_t t = 0; t < n; ++t) acc += g[o * T + t];
                            d_cb[s * C + o] += acc;
                        }
                        for (int i = 0; i < cnt; ++i) {
                            const int64_t block = (s * N + mem[i]) * C * C;
                            const float *w = p->cw + block, *x = xb[mem[i]];
                            float *dxm = dx + mem[i] * C * T;
                            int64_t o0 = 0;
                            for (; o0 + ROWS <= C; o0 += ROWS)
                                concat_rows_backward(w, x, C, cs, g, n, o0, ROWS, dxm, d_cw + block);
                            for (; o0 < C; ++o0) concat_rows_backward(w, x, C, cs, g, n, o0, 1, dxm, d_cw + block);
                        }
                        break;
                    case OP_WF: {
                        /* In double: the scores' gradients s_j = α_j (d_j - Σ_i α_i d_i) cancel (they sum to 0
                         * over the members), and their sums over pixels are the scorers' gradients. */
                        double da[MAX_MAPS][T], u[T];
                        for (int64_t t = 0; t < n; ++t) u[t] = 0.0;
                        for (int i = 0; i < cnt; ++i) {
                            const float *aj = alpha + mem[i] * T;
                            for (int64_t t = 0; t < n; ++t) da[i][t] = 0.0;
                            for (int64_t c = 0; c < C; ++c) {
                                const float *xc = xb[mem[i]] + c * cs, *gc = g + c * T;
                                for (int64_t t = 0; t < n; ++t) da[i][t] += (double)gc[t] * xc[t];
                            }
                            for (int64_t t = 0; t < n; ++t) u[t] += aj[t] * da[i][t];
                        }
                        for (int i = 0; i < cnt; ++i) {
                            const int64_t j = mem[i];
                            const float *aj = alpha + j * T;
                            double ds[T], acc = 0.0;
                            for (int64_t t = 0; t < n; ++t) {
                                ds[t] = aj[t] * (da[i][t] - u[t]);
                                acc += ds[t];
                            }
                            d_wb[s * N + j] += acc;
                            for (int64_t c = 0; c < C; ++c) {
                                const float *xc = xb[j] + c * cs, *gc = g + c * T, w = p->ww[(s * N + j) * C + c];
                                float *restrict dxc = dx + (j * C + c) * T;
                                double accw = 0.0;
                                for (int64_t t = 0; t < n; ++t) {
                                    accw += ds[t] * xc[t];
                                    dxc[t] += aj[t] * gc[t] + (float)ds[t] * w;
                                }
                                d_ww[(s * N + j) * C + c] += accw;
                            }
                        }
                        break;
                    }
                    }
                }
            for (int64_t j = 0; j < N; ++j)
                for (int64_t c = 0; c < C; ++c) {
                    float *restrict out = p->dx[j] + b * C * HW + c * cs + h0;
                    const float *restrict src = dx + (j * C + c) * T;
                    for (int64_t t = 0; t < n; ++t) out[t] = src[t];
                }
        }
    free(mut);
    free(alpha);
    free(e);
    free(dx);
    free(gm);
    return restored(csr, status);
}

/* wf's fused maps out[s] = Σ_{n in s} α[s,n] x[n], per pixel: α [S, N, B, HW], x [N, B, C, HW],
 * out [S, B, C, HW], member[s,n] = 1 where map n belongs to subset s. Subsets [s0, s1). */
int lomix_weighted_sum_forward(const float *alpha, const float *x, const uint8_t *member, int64_t S, int64_t N,
                               int64_t B, int64_t C, int64_t HW, int64_t s0, int64_t s1, float *out) {
    for (int64_t s = s0; s < s1; ++s)
        for (int64_t b = 0; b < B; ++b)
            for (int64_t c = 0; c < C; ++c) {
                float *o = out + ((s * B + b) * C + c) * HW;
                for (int64_t t = 0; t < HW; ++t) o[t] = 0.0f;
                for (int64_t n = 0; n < N; ++n) {
                    if (!member[s * N + n]) continue;
                    const float *a = alpha + ((s * N + n) * B + b) * HW, *xn = x + ((n * B + b) * C + c) * HW;
                    for (int64_t t = 0; t < HW; ++t) o[t] += a[t] * xn[t];
                }
            }
    return 0;
}

/* Its backward for subsets [s0, s1): d_alpha[s,n] = Σ_c g[s,c] x[n,c] (0 for non-members, whose
 * α is a constant 0). */
int lomix_weighted_sum_backward_alpha(const float *grad, const float *x, const uint8_t *member, int64_t S,
                                      int64_t N, int64_t B, int64_t C, int64_t HW, int64_t s0, int64_t s1,
                                      float *d_alpha) {
    for (int64_t s = s0; s < s1; ++s)
        for (int64_t n = 0; n < N; ++n)
            for (int64_t b = 0; b < B; ++b) {
                float *da = d_alpha + ((s * N + n) * B + b) * HW;
                for (int64_t t = 0; t < HW; ++t) da[t] = 0.0f;
                if (!member[s * N + n]) continue;
                for (int64_t c = 0; c < C; ++c) {
                    const float *g = grad + ((s * B + b) * C + c) * HW, *xn = x + ((n * B + b) * C + c) * HW;
                    for (int64_t t = 0; t < HW; ++t) da[t] += g[t] * xn[t];
                }
            }
    return 0;
}

/* ... and for maps [n0, n1): d_x[n] = Σ_{s ∋ n} α[s,n] g[s]. */
int lomix_weighted_sum_backward_x(const float *grad, const float *alpha, const uint8_t *member, int64_t S,
                                  int64_t N, int64_t B, int64_t C, int64_t HW, int64_t n0, int64_t n1,
                                  float *d_x) {
    for (int64_t n = n0; n < n1; ++n)
        for (int64_t b = 0; b < B; ++b)
            for (int64_t c = 0; c < C; ++c) {
                float *dx = d_x + ((n * B + b) * C + c) * HW;
                for (int64_t t = 0; t < HW; ++t) dx[t] = 0.0f;
                for (int64_t s = 0; s < S; ++s) {
                    if (!member[s * N + n]) continue;
                    const float *a = alpha + ((s * N + n) * B + b) * HW, *g = grad + ((s * B + b) * C + c) * HW;
                    for (int64_t t = 0; t < HW; ++t) dx[t] += a[t] * g[t];
                }
            }
    return 0;
}
