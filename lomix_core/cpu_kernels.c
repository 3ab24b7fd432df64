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

#define T 64

/* Per pixel t of the block: the row maximum, and e_c = exp(z_c - max) with their sum. */
static void softmax_block(const float *zb, int64_t C, int64_t sc, int64_t h0, int64_t n,
                          float *e, float *mx, float *sum) {
    for (int64_t t = 0; t < n; ++t) mx[t] = zb[h0 + t];
    for (int64_t c = 1; c < C; ++c)
        for (int64_t t = 0; t < n; ++t) mx[t] = fmaxf(mx[t], zb[c * sc + h0 + t]);
    for (int64_t t = 0; t < n; ++t) sum[t] = 0.0f;
    for (int64_t c = 0; c < C; ++c)
        for (int64_t t = 0; t < n; ++t) {
            float v = expf(zb[c * sc + h0 + t] - mx[t]);
            e[c * T + t] = v;
            sum[t] += v;
        }
}

/* ce[m] = Σ -log p_y, inter[m,c] = Σ p_c [y = c], psq[m,c] = Σ p_c², over all B·HW pixels
 * (double accumulators, written, not added to). */
int lomix_ce_dice_forward(const float *z, const int32_t *target, int64_t B, int64_t C, int64_t HW,
                          int64_t sm, int64_t sb, int64_t sc, int64_t m0, int64_t m1, double *ce, double *inter, double *psq) {
    float *e = malloc(sizeof(float) * C * T);
    if (!e) return 1;
    float mx[T], sum[T], zy[T];
    for (int64_t m = m0; m < m1; ++m) {
        double ce_m = 0.0, *I = inter + m * C, *Q = psq + m * C;
        for (int64_t c = 0; c < C; ++c) I[c] = Q[c] = 0.0;
        for (int64_t b = 0; b < B; ++b) {
            const float *zb = z + m * sm + b * sb;
            const int32_t *yb = target + b * HW;
            for (int64_t h0 = 0; h0 < HW; h0 += T) {
                int64_t n = HW - h0 < T ? HW - h0 : T;
                softmax_block(zb, C, sc, h0, n, e, mx, sum);
                for (int64_t t = 0; t < n; ++t) zy[t] = 0.0f;
                for (int64_t c = 0; c < C; ++c)
                    for (int64_t t = 0; t < n; ++t) zy[t] += yb[h0 + t] == (int32_t)c ? zb[c * sc + h0 + t] : 0.0f;
                float block_ce = 0.0f;
                for (int64_t t = 0; t < n; ++t) {
                    block_ce += mx[t] + logf(sum[t]) - zy[t];
                    sum[t] = 1.0f / sum[t];
                }
                ce_m += block_ce;
                for (int64_t c = 0; c < C; ++c) {
                    float q = 0.0f, i = 0.0f;
                    for (int64_t t = 0; t < n; ++t) {
                        float p = e[c * T + t] * sum[t];
                        q += p * p;
                        i += yb[h0 + t] == (int32_t)c ? p : 0.0f;
                    }
                    Q[c] += q;
                    I[c] += i;
                }
            }
        }
        ce[m] = ce_m;
    }
    free(e);
    return 0;
}

/* grad[m,b,c,x] = p_c (d_c - s) + a_m (p_c - [y = c]) with d_c = gamma[m,c] p_c - beta[m,c] [y = c]
 * and s = Σ_c p_c d_c: the gradient of Σ_m g_m L_m, the upstream g_m folded into a, gamma, beta. */
int lomix_ce_dice_backward(const float *z, const int32_t *target, int64_t B, int64_t C, int64_t HW,
                           int64_t sm, int64_t sb, int64_t sc, int64_t m0, int64_t m1, const float *a, const float *gamma, const float *beta,
                           float *grad) {
    float *restrict e = malloc(sizeof(float) * C * T), *restrict d = malloc(sizeof(float) * C * T);
    float mx[T], sum[T], s[T];
    if (!e || !d) {
        free(e);
        free(d);
        return 1;
    }
    for (int64_t m = m0; m < m1; ++m) {
        const float *G = gamma + m * C, *Bt = beta + m * C, am = a[m];
        for (int64_t b = 0; b < B; ++b) {
            const float *zb = z + m * sm + b * sb;
            float *gb = grad + m * sm + b * sb;
            const int32_t *yb = target + b * HW;
            for (int64_t h0 = 0; h0 < HW; h0 += T) {
                int64_t n = HW - h0 < T ? HW - h0 : T;
                softmax_block(zb, C, sc, h0, n, e, mx, sum);
                for (int64_t t = 0; t < n; ++t) {
                    sum[t] = 1.0f / sum[t];
                    s[t] = 0.0f;
                }
                for (int64_t c = 0; c < C; ++c) {
                    const float g = G[c], beta_c = Bt[c];
                    float *restrict ec = e + c * T, *restrict dc = d + c * T;
                    for (int64_t t = 0; t < n; ++t) {
                        float p = ec[t] * sum[t];
                        float dp = g * p - (yb[h0 + t] == (int32_t)c ? beta_c : 0.0f);
                        ec[t] = p;
                        dc[t] = dp;
                        s[t] += p * dp;
                    }
                }
                for (int64_t c = 0; c < C; ++c)
                    for (int64_t t = 0; t < n; ++t) {
                        float p = e[c * T + t];
                        gb[c * sc + h0 + t] = p * (d[c * T + t] - s[t]) + am * (p - (yb[h0 + t] == (int32_t)c ? 1.0f : 0.0f));
                    }
            }
        }
    }
    free(e);
    free(d);
    return 0;
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
