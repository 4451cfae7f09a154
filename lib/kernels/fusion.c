/* Fusion weights and anomaly values (docs/method.md section 7). */
#include <math.h>

#include "fusion.h"

grad__fusion_stats grad__fusion_stats_at(const float *R, const float *F, int channels,
                                         size_t positions, size_t p) {
  double dot = 0, rr = 0, ff = 0, dd = 0;
  for (int c = 0; c < channels; c++) {
    double r = R[(size_t)c * positions + p], f = F[(size_t)c * positions + p];
    dot += r * f;
    rr += r * r;
    ff += f * f;
    dd += (r - f) * (r - f);
  }
  grad__fusion_stats st;
  double clamped = fmin(fmax(GRAD__FUSION_ERROR_SCALE * dd / channels, 0.0), 1.0);
  double m = 1.0 - nearbyint(clamped); /* round half to even, as torch.round */
  st.norm_r = sqrt(rr);
  st.norm_f = sqrt(ff);
  /* torch.cosine_similarity clamps each norm separately by eps. */
  st.cosine = dot / (fmax(st.norm_r, GRAD__COSINE_EPS) * fmax(st.norm_f, GRAD__COSINE_EPS));
  st.s = GRAD__FUSION_MASK_WEIGHT * m + GRAD__FUSION_COSINE_WEIGHT * st.cosine;
  st.d2 = dd;
  return st;
}

void grad__fusion_weights(const float *R, const float *F, int channels, size_t positions,
                          float *s, float *cosine, float *d2, float *norm_r, float *norm_f) {
  for (size_t p = 0; p < positions; p++) {
    grad__fusion_stats st = grad__fusion_stats_at(R, F, channels, positions, p);
    s[p] = (float)st.s;
    if (cosine) cosine[p] = (float)st.cosine;
    if (d2) d2[p] = (float)st.d2;
    if (norm_r) norm_r[p] = (float)st.norm_r;
    if (norm_f) norm_f[p] = (float)st.norm_f;
  }
}

void grad__fusion_anomaly(const float *R, const float *F, int channels, size_t positions,
                          float *a) {
  for (size_t p = 0; p < positions; p++) {
    grad__fusion_stats st = grad__fusion_stats_at(R, F, channels, positions, p);
    a[p] = (float)(fabs(1.0 - st.s) * sqrt(st.d2));
  }
}
