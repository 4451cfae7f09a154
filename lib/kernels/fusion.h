/*
 * The fusion of docs/method.md section 7, shared by training (its loss) and the
 * scoring head. R and F are one image's C x P maps (P = H * W positions,
 * channel-major planes). For each position p:
 *   e_p = mean_c (R - F)^2,  m_p = 1 - round(clamp(0.05 e_p, 0, 1)),
 *   c_p = cos(R_p, F_p),     s_p = 0.3 m_p + 0.7 c_p,
 *   R'_p = s_p F_p + (1 - s_p) R_p,  a_p = |1 - s_p| * ||R_p - F_p||.
 */
#ifndef GRAD_FUSION_H
#define GRAD_FUSION_H

#include <stddef.h>

/* Guards the cosine's denominator, as torch.cosine_similarity's eps. */
#define GRAD__COSINE_EPS 1e-8f

/* The constants of the fusion, written once so scoring and the training
 * loss cannot drift apart: e_p's scale and the weights of m_p and c_p. */
#define GRAD__FUSION_ERROR_SCALE 0.05
#define GRAD__FUSION_MASK_WEIGHT 0.3
#define GRAD__FUSION_COSINE_WEIGHT 0.7

/* The statistics of one position, in double. norm_r and norm_f are the
 * unclamped norms; cosine uses each clamped at GRAD__COSINE_EPS. */
typedef struct grad__fusion_stats {
  double s, cosine, d2, norm_r, norm_f;
} grad__fusion_stats;

/* The statistics at position p of R and F (channels x positions each). */
grad__fusion_stats grad__fusion_stats_at(const float *R, const float *F, int channels,
                                         size_t positions, size_t p);

/* Per position: s (fusion weight), and optionally (NULL to skip) the cosine
 * c, the squared distance d2 = ||R_p - F_p||^2 and the norms of R_p and F_p. */
void grad__fusion_weights(const float *R, const float *F, int channels, size_t positions,
                          float *s, float *cosine, float *d2, float *norm_r, float *norm_f);

/* The anomaly value a_p = |1 - s_p| * ||R_p - F_p|| at every position. */
void grad__fusion_anomaly(const float *R, const float *F, int channels, size_t positions,
                          float *a);

#endif
