/* CE + soft-Dice of a stack of maps, one pass over the logits forward and one backward.
 *
 * z is [M, B, C, HW] float32, target [B, HW] int32. A block of T pixels of one map is read once:
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
static void softmax_block(const float *zb, int64_t C, int64_t HW, int64_t h0, int64_t n,
                          float *e, float *mx, float *sum) {
    for (int64_t t = 0; t < n; ++t) mx[t] = zb[h0 + t];
    for (int64_t c = 1; c < C; ++c)
        for (int64_t t = 0; t < n; ++t) mx[t] = fmaxf(mx[t], zb[c * HW + h0 + t]);
    for (int64_t t = 0; t < n; ++t) sum[t] = 0.0f;
    for (int64_t c = 0; c < C; ++c)
        for (int64_t t = 0; t < n; ++t) {
            float v = expf(zb[c * HW + h0 + t] - mx[t]);
            e[c * T + t] = v;
            sum[t] += v;
        }
}

/* ce[m] = Σ -log p_y, inter[m,c] = Σ p_c [y = c], psq[m,c] = Σ p_c², over all B·HW pixels
 * (double accumulators, written, not added to). */
int lomix_ce_dice_forward(const float *z, const int32_t *target, int64_t B, int64_t C, int64_t HW,
                          int64_t m0, int64_t m1, double *ce, double *inter, double *psq) {
    float *e = malloc(sizeof(float) * C * T);
    if (!e) return 1;
    float mx[T], sum[T], zy[T];
    for (int64_t m = m0; m < m1; ++m) {
        double ce_m = 0.0, *I = inter + m * C, *Q = psq + m * C;
        for (int64_t c = 0; c < C; ++c) I[c] = Q[c] = 0.0;
        for (int64_t b = 0; b < B; ++b) {
            const float *zb = z + (m * B + b) * C * HW;
            const int32_t *yb = target + b * HW;
            for (int64_t h0 = 0; h0 < HW; h0 += T) {
                int64_t n = HW - h0 < T ? HW - h0 : T;
                softmax_block(zb, C, HW, h0, n, e, mx, sum);
                for (int64_t t = 0; t < n; ++t) zy[t] = 0.0f;
                for (int64_t c = 0; c < C; ++c)
                    for (int64_t t = 0; t < n; ++t) zy[t] += yb[h0 + t] == c ? zb[c * HW + h0 + t] : 0.0f;
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
                        i += yb[h0 + t] == c ? p : 0.0f;
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
                           int64_t m0, int64_t m1, const float *a, const float *gamma, const float *beta,
                           float *grad) {
    float *e = malloc(sizeof(float) * 2 * C * T);
    if (!e) return 1;
    float *d = e + C * T, mx[T], sum[T], s[T];
    for (int64_t m = m0; m < m1; ++m) {
        const float *G = gamma + m * C, *Bt = beta + m * C, am = a[m];
        for (int64_t b = 0; b < B; ++b) {
            const float *zb = z + (m * B + b) * C * HW;
            float *gb = grad + (m * B + b) * C * HW;
            const int32_t *yb = target + b * HW;
            for (int64_t h0 = 0; h0 < HW; h0 += T) {
                int64_t n = HW - h0 < T ? HW - h0 : T;
                softmax_block(zb, C, HW, h0, n, e, mx, sum);
                for (int64_t t = 0; t < n; ++t) {
                    sum[t] = 1.0f / sum[t];
                    s[t] = 0.0f;
                }
                for (int64_t c = 0; c < C; ++c)
                    for (int64_t t = 0; t < n; ++t) {
                        float p = e[c * T + t] * sum[t];
                        float dp = G[c] * p - (yb[h0 + t] == c ? Bt[c] : 0.0f);
                        e[c * T + t] = p;
                        d[c * T + t] = dp;
                        s[t] += p * dp;
                    }
                for (int64_t c = 0; c < C; ++c)
                    for (int64_t t = 0; t < n; ++t) {
                        float p = e[c * T + t];
                        gb[c * HW + h0 + t] = p * (d[c * T + t] - s[t]) + am * (p - (yb[h0 + t] == c ? 1.0f : 0.0f));
                    }
            }
        }
    }
    free(e);
    return 0;
}
