/* libgrad: The scoring head: fusion, anomaly map, image score, threshold (docs/method.md section 7). */
#ifndef GRAD_HEAD_H
#define GRAD_HEAD_H

#include <grad/common.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * The scoring head turns a reconstruction R and the features F it
 * reconstructs (C x H x W each, one image) into an anomaly map and an image
 * score:
 *   a_p   = the fused anomaly value at each of the H x W positions,
 *   map   = bilinear upsampling of a (align_corners=True) to size x size,
 *           then a 21 x 21 box filter (stride 1, zero padding 10, dividing
 *           by 441 everywhere, also near the border),
 *   score = the maximum over the 32 x 32 average pool of the map (stride 1,
 *           no padding).
 * It also holds the calibrated thresholds that turn scores into decisions.
 * A head is read-only after calibration and may be shared by threads.
 */
typedef struct grad_head grad_head;

/* The fixed window sizes of docs/method.md. */
#define GRAD_HEAD_SMOOTH_SIZE 21
#define GRAD_HEAD_POOL_SIZE 32

/*
 * A head for the network input size `size` (the map is size x size);
 * GRAD_HEAD_POOL_SIZE <= size <= 8192. Not calibrated yet. The head is the
 * caller's (grad_head_free). Errors: GRAD_E_INVALID_ARG (out NULL, size out
 * of range), GRAD_E_NOMEM. A model's own head is reached with
 * grad_model_head(), borrowed: never free that one.
 *
 * Threading: the calls taking a const head may run in any number of threads
 * at once (with distinct workspaces); the calibrate and set calls modify the
 * head and must not run while another thread uses it.
 */
GRAD_API GRAD_NODISCARD grad_status grad_head_create(int size, grad_head **out);
/* Frees the head; NULL is a no-op. */
GRAD_API void grad_head_free(grad_head *head);

GRAD_API int grad_head_size(const grad_head *head);
GRAD_API int grad_head_smooth_size(const grad_head *head);
GRAD_API int grad_head_pool_size(const grad_head *head);

/*
 * The anomaly map (size x size floats, row-major) and the image score of one
 * image from R and F (channels x height x width floats each, channel-major).
 * Either output may be NULL. Scratch comes from ws (reused, see
 * grad_workspace_create). GRAD_E_NUMERIC when R or F holds NaN or Inf.
 */
GRAD_API GRAD_NODISCARD grad_status grad_head_map(const grad_head *head, grad_workspace *ws,
                                                  const float *R, const float *F,
                                                  int channels, int height, int width,
                                                  float *map, float *score);

/*
 * The size x size map resized to width x height (the original image) with
 * grad_plane_resize's antialiased bilinear filter, into out (width * height
 * floats).
 */
GRAD_API GRAD_NODISCARD grad_status grad_head_resize_map(const grad_head *head,
                                                         const float *map, int width,
                                                         int height, float *out);

/* ---- Thresholds ----------------------------------------------------------
 * Image and pixel decisions each use a threshold t (anomalous iff
 * value >= t) and the score range [lo, hi] of the calibration set, which
 * gives the normalised score
 *   n(v) = clamp((v - t) / (hi - lo) + 0.5, 0, 1)
 * so t maps to 0.5 (if hi <= lo, hi - lo is replaced by |t|, or 1 if t = 0).
 */
typedef enum grad_threshold_rule {
  GRAD_THRESHOLD_NONE = 0,        /* not calibrated */
  GRAD_THRESHOLD_QUANTILE = 1,    /* a quantile of held-out normal scores */
  GRAD_THRESHOLD_MAX_MARGIN = 2,  /* too few normal scores: max + margin * range */
  GRAD_THRESHOLD_F1 = 3,          /* F1-optimal on a labelled validation set */
  GRAD_THRESHOLD_MANUAL = 4       /* set by the caller */
} grad_threshold_rule;

/* "none", "quantile", "max_margin", "f1", "manual"; "unknown" otherwise. */
GRAD_API const char *grad_threshold_rule_name(grad_threshold_rule rule);

/* Versioned as grad_backbone_options: fill with
 * grad_calibration_options_init(&opts, sizeof opts), then change fields. */
typedef struct grad_calibration_options {
  size_t struct_size;  /* the caller's sizeof(grad_calibration_options), set by _init */
  double quantile;     /* in (0, 1]; default 0.99 */
  double margin;       /* >= 0, a fraction of the normal score range; default 0.1 */
} grad_calibration_options;

/* Fills struct_size bytes at opts with the defaults; NULL is a no-op. */
GRAD_API void grad_calibration_options_init(grad_calibration_options *opts, size_t struct_size);

/*
 * Calibrates from held-out normal images (not used for training).
 * Image threshold, from the `count` image scores s_1..s_n:
 *   the `quantile` q of the scores (linear interpolation between order
 *   statistics, numpy's default) when n * (1 - q) >= 1, i.e. when at least
 *   one normal score is expected above it (n >= 100 for q = 0.99);
 *   otherwise max + margin * (max - min).
 * Pixel threshold: the same rule applied to the per-image maxima of the
 * maps, so a held-out normal image gets a non-empty mask about as often as
 * it is called anomalous. maps holds `count` maps of map_pixels values each,
 * at the resolution masks will be made at (NULL leaves the pixel threshold
 * as it was). The ranges [lo, hi] are the min and max of the image scores
 * and of all map values. opts NULL means the defaults. GRAD_E_NUMERIC on a
 * non-finite input.
 */
GRAD_API GRAD_NODISCARD grad_status grad_head_calibrate_normal(
    grad_head *head, const float *image_scores, const float *maps, size_t count,
    size_t map_pixels, const grad_calibration_options *opts);

/*
 * Calibrates from a labelled validation set: each threshold is the one with
 * the highest F1 (grad_eval_f1_max, the highest such threshold), the ranges
 * are the min and max over all of its scores. Image labels and the
 * pixel_count pixel values with their mask values (nonzero = anomalous) are
 * flat arrays; pixels NULL leaves the pixel threshold as it was. Each level
 * needs both labels.
 */
GRAD_API GRAD_NODISCARD grad_status grad_head_calibrate_labelled(
    grad_head *head, const float *image_scores, const uint8_t *image_labels, size_t count,
    const float *pixels, const uint8_t *pixel_labels, size_t pixel_count);

/* Sets a threshold and range by hand (rule GRAD_THRESHOLD_MANUAL); all
 * finite, lo <= hi. */
GRAD_API GRAD_NODISCARD grad_status grad_head_set_image_threshold(grad_head *head,
                                                                  double threshold, double lo,
                                                                  double hi);
GRAD_API GRAD_NODISCARD grad_status grad_head_set_pixel_threshold(grad_head *head,
                                                                  double threshold, double lo,
                                                                  double hi);

/* The thresholds (NaN when not calibrated) and how they were chosen. */
GRAD_API double grad_head_image_threshold(const grad_head *head);
GRAD_API double grad_head_pixel_threshold(const grad_head *head);
GRAD_API grad_threshold_rule grad_head_image_rule(const grad_head *head);
GRAD_API grad_threshold_rule grad_head_pixel_rule(const grad_head *head);

/* The normalised image score n(score); NaN when not calibrated. */
GRAD_API double grad_head_normalize_score(const grad_head *head, double score);
/* 1 when score >= the image threshold; 0 otherwise or when not calibrated. */
GRAD_API int grad_head_is_anomalous(const grad_head *head, double score);

/* n(v) of each of `count` map values with the pixel threshold and range
 * (out may equal map). GRAD_E_STATE when the pixel threshold is not set. */
GRAD_API GRAD_NODISCARD grad_status grad_head_normalize_map(const grad_head *head,
                                                            const float *map, size_t count,
                                                            float *out);
/* mask[i] = 255 where map[i] >= the pixel threshold, else 0. GRAD_E_STATE
 * when the pixel threshold is not set. */
GRAD_API GRAD_NODISCARD grad_status grad_head_mask(const grad_head *head, const float *map,
                                                   size_t count, uint8_t *mask);

#ifdef __cplusplus
}
#endif

#endif /* GRAD_HEAD_H */
