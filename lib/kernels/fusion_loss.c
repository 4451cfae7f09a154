/*
 * The training loss (docs/method.md section 6): the mean of (R' - F)^2 over all
 * elements, R' the fused reconstruction of section 7. Per position p,
 * R'_p - F_p = (1 - s_p)(R_p - F_p), so the loss is
 *   L = sum_p (1 - s_p)^2 d2_p / (n C P),   d2_p = ||R_p - F_p||^2,
 * and with s_p = 0.3 m_p + 0.7 c_p (m_p a rounded step, zero gradient):
 *   dL/dR_p = 2 / (n C P) * [(1 - s_p)^2 (R_p - F_p) - 0.7 (1 - s_p) d2_p dc_p/dR_p].
 * Everything is accumulated in double; the per-position statistics follow
 * fusion.c (separate eps clamps of the two norms, round half to even).
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
      double dot = 0.0, rr = 0.0, ff = 0.0, dd = 0.0;
      for (int c = 0; c < channels; c++) {
        double a = r[(size_t)c * positions + p], b = f[(size_t)c * positions + p];
        dot += a * b;
        rr += a * a;
        ff += b * b;
        dd += (a - b) * (a - b);
      }
      double m = 1.0 - nearbyint(fmin(fmax(0.05 * dd / channels, 0.0), 1.0));
      double nr = sqrt(rr), nf = sqrt(ff);
      double cr = fmax(nr, eps), cf = fmax(nf, eps);
      double cosine = dot / (cr * cf);
      double one = 1.0 - (0.3 * m + 0.7 * cosine);
      total += one * one * dd;
      if (!d) continue;
      /* dc/dr = f / (|r| |f|) - c r / |r|^2; a clamped |r| is a constant. */
      double ka = one * one, kf = -0.7 * one * dd / (cr * cf);
      double kr = nr > eps ? 0.7 * one * dd * cosine / (nr * nr) : 0.0;
      for (int c = 0; c < channels; c++) {
        size_t at = (size_t)c * positions + p;
        double a = r[at], b = f[at];
        d[at] = (float)(2.0 / count * (ka * (a - b) + kf * b + kr * a));
      }
    }
  }
  return total / count;
}
