/*
 * Sums of floats in GRAD__LANES double partial sums, added up in a fixed
 * tree: a form the vectoriser takes without reassociating a scalar sum, so
 * the per-ISA builds (isa_internal.h) and any thread count give the same
 * bits. BatchNorm's statistics and the per-plane means of CRAD's
 * squeeze-and-excitation use it.
 */
#ifndef GRAD_LANE_SUM_H
#define GRAD_LANE_SUM_H

#include <stddef.h>

#include "isa_internal.h" /* INLINE */

enum { GRAD__LANES = 16 };

/* acc[0] + ... + acc[GRAD__LANES - 1], halves added pairwise. */
INLINE double grad__lanes_fold(const double *acc) {
  double half[GRAD__LANES / 2];
  for (int k = 0; k < GRAD__LANES / 2; k++) half[k] = acc[k] + acc[k + GRAD__LANES / 2];
  for (int w = GRAD__LANES / 4; w >= 1; w /= 2)
    for (int k = 0; k < w; k++) half[k] += half[k + w];
  return half[0];
}

/* v[0] + ... + v[n - 1]: value j goes to lane j % GRAD__LANES. */
INLINE double grad__lane_sum(const float *v, size_t n) {
  double acc[GRAD__LANES] = {0};
  const size_t body = n - n % GRAD__LANES;
  for (size_t j = 0; j < body; j += GRAD__LANES)
    for (int k = 0; k < GRAD__LANES; k++) acc[k] += v[j + k];
  for (size_t j = body; j < n; j++) acc[j - body] += v[j];
  return grad__lanes_fold(acc);
}

#endif /* GRAD_LANE_SUM_H */
