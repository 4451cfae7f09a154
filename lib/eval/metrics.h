/*
 * Internal pieces of the evaluation metrics (<grad/eval.h>), shared with the
 * threshold calibration of the scoring head.
 *
 * Scores are compared through order-preserving 32-bit keys: sorting the keys
 * as unsigned integers sorts the floats (with -0 == +0), which lets an
 * in-place radix sort order tens of millions of pixels in O(n) time and no
 * memory beyond the keys themselves. Ties are then exact key equalities.
 */
#ifndef GRAD_METRICS_H
#define GRAD_METRICS_H

#include <stdint.h>

#include "core.h"

/* Monotone map float -> uint32 (NaN must be excluded by the caller). */
uint32_t grad__float_key(float v);
/* The float a key came from (+0 for either zero). */
float grad__key_float(uint32_t key);

/* Ascending in-place sorts: all 32 bits, and the high 32 bits of 64-bit
 * values (the low halves, a payload, end up in no particular order). */
void grad__sort_u32(uint32_t *keys, size_t n);
void grad__sort_u64_high(uint64_t *values, size_t n);

/*
 * Splits scores by label (nonzero = anomalous) into sorted key arrays held in
 * one allocation (*pos; *neg points into it; free *pos with grad__free).
 * GRAD_E_NUMERIC names the first NaN score; `what` names the input in
 * messages ("image score", "pixel").
 */
grad_status grad__split_sorted_keys(const float *scores, const uint8_t *labels, size_t n,
                                    const char *what, uint32_t **pos, size_t *npos,
                                    uint32_t **neg, size_t *nneg);

/*
 * From ascending key arrays, both non-empty: the AUROC (probability that a
 * positive outscores a negative, ties counting one half, which equals the
 * trapezoid area under the ROC curve with tied scores as one point).
 */
double grad__auroc_sorted(const uint32_t *pos, size_t npos, const uint32_t *neg, size_t nneg);

/*
 * The best F1 over all thresholds t (anomalous iff score >= t) among the
 * distinct scores, npos > 0; *threshold gets the highest t reaching it.
 */
double grad__f1_max_sorted(const uint32_t *pos, size_t npos, const uint32_t *neg, size_t nneg,
                           float *threshold);

/* The q-quantile (0 <= q <= 1) of n >= 1 finite values with numpy's default
 * linear interpolation between order statistics. */
grad_status grad__quantile(const float *values, size_t n, double q, double *out);

#endif
