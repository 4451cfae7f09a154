/*
 * Internal side of the scoring head (<grad/head.h>): the map from anomaly
 * values already fused, and the head's part of a model file.
 */
#ifndef GRAD_HEAD_INTERNAL_H
#define GRAD_HEAD_INTERNAL_H

#include <grad/head.h>

#include "core.h"
#include "safetensors.h"

/*
 * The map (size x size, may be NULL) and score (may be NULL) from the anomaly
 * values a (height x width, e.g. from grad__fusion_anomaly). Scratch from ws,
 * released before returning. GRAD_E_NUMERIC when a holds NaN or Inf.
 */
grad_status grad__head_map_anomaly(const grad_head *head, grad_workspace *ws, const float *a,
                                   int height, int width, float *map, float *score);

/*
 * Model-file metadata (all strings, all under "head."): size, smooth_size,
 * pool_size, and for LEVEL in image, pixel: LEVEL_rule (a
 * grad_threshold_rule_name), LEVEL_threshold, LEVEL_lo, LEVEL_hi (doubles
 * written with 17 significant digits, so they read back bit-exact) and
 * LEVEL_count (the number of calibration values). Thresholds of rule "none"
 * are written as the rule alone.
 */
grad_status grad__head_write(const grad_head *head, grad__st_writer *writer);

/* Reads what grad__head_write wrote; errors name the file and the key. */
grad_status grad__head_read(const grad__st_file *file, grad_head **out);

#endif
