/*
 * The training loss (docs/method.md section 6): the mean of (R' - F)^2 over all
 * elements, R' the fused reconstruction of section 7. Per position p,
 * R'_p - F_p = (1 - s_p)(R_p - F_p), so the loss is
 *   L = sum_p (1 - s_p)^2 d2_p / (n C P),   d2_p = ||R_p - F_p||^2,
 * and with s_p = 0.3 m_p + 0.7 c_p (m_p a rounded step, zero gradient):
 *   dL/dR_p = 2 / (n C P) * [(1 - s_p)^2 (R_p - F_p) - 0.7 (1 - s_p) d2_p dc_p/dR_p].
 * Everything is accumulated in double; the per-position statistics are
 * fusion.c's (grad__fusion_stats_at), the very ones scoring uses.
 */
#include <math.h>

#include "fusion.h"
#include "store_internal.h"

double grad__fusion_loss(const float *R, const float *F, int n, int channels, size_t positions,
                         float *dR) {
  const double count = (double)n * (double)channels * (double)positions;
  const double eps = GRAD__COSINE_EPS;
  double total = 0.0;
  for (int i = 0; i < n; i++) {
    const float *r = R + (size_t)i * channels * positions;
    const float *f = F + (size_t)i * channels * positions;
    float *d = dR ? dR + (size_t)i * channels * positions : NULL;
    for (size_t p = 0; p < positions; p++) {
      grad__fusion_stats st = grad__fusion_stats_at(r, f, channels, positions, p);
      const double dd = st.d2, nr = st.norm_r, cosine = st.cosine;
      const double cr = fmax(nr, eps), cf = fmax(st.norm_f, eps);
      const double one = 1.0 - st.s;
      total += one * one * dd;
      if (!d) continue;
      /* dc/dr = f / (|r| |f|) - c r / |r|^2; a clamped |r| is a constant. */
      const double w = GRAD__FUSION_COSINE_WEIGHT;
      double ka = one * one, kf = -w * one * dd / (cr * cf);
      double kr = nr > eps ? w * one * dd * cosine / (nr * nr) : 0.0;
      for (int c = 0; c < channels; c++) {
        size_t at = (size_t)c * positions + p;
        double a = r[at], b = f[at];
        d[at] = (float)(2.0 / count * (ka * (a - b) + kf * b + kr * a));
      }
    }
  }
  return total / count;
}
