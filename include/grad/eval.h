/* libgrad: Evaluation metrics: AUROC, AUPRO, F1-max (method.md section 8). */
#ifndef GRAD_EVAL_H
#define GRAD_EVAL_H

#include <grad/common.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Conventions of every metric here: labels and mask values are "anomalous"
 * when nonzero; a higher score means more anomalous; a sample is predicted
 * anomalous when score >= threshold. Metrics are computed exactly (no
 * binning of the scores): tied scores form one threshold. Curves are never
 * flipped: an AUROC below 0.5 is returned as it is. NaN scores are refused
 * with GRAD_E_NUMERIC; +-Inf are ordinary (extreme) scores.
 */

/*
 * Area under the ROC curve of `count` image scores: the probability that an
 * anomalous image scores above a normal one, ties counting one half (the
 * trapezoid rule over the ROC curve with tied scores merged into one point,
 * as sklearn's roc_auc_score). Needs both labels (GRAD_E_INVALID_ARG
 * otherwise). O(count) memory, O(count) time (radix sort).
 */
GRAD_API GRAD_NODISCARD grad_status grad_eval_auroc(const float *scores, const uint8_t *labels,
                                                    size_t count, double *auroc);

/*
 * The largest F1 = 2 TP / (2 TP + FP + FN) over all thresholds (each distinct
 * score), and the threshold reaching it (the highest one when several do;
 * threshold may be NULL). Needs at least one anomalous label.
 */
GRAD_API GRAD_NODISCARD grad_status grad_eval_f1_max(const float *scores, const uint8_t *labels,
                                                     size_t count, double *f1,
                                                     float *threshold);

/* The FPR limit of the MVTec AD protocol's AUPRO. */
#define GRAD_AUPRO_FPR_LIMIT 0.3

/*
 * Pixel-level metrics over a whole test set: add each test image's anomaly
 * map with its ground-truth mask (both width x height, row-major; the maps
 * of one accumulator may have different sizes), then ask for the metrics.
 * Memory: 4 bytes per normal pixel and 8 per anomalous pixel (about 200 MB
 * for 1,000 maps of 224 x 224); each metric call after an add sorts in
 * place in O(pixels) time. Not thread-safe: one accumulator per thread.
 */
typedef struct grad_pixel_metrics grad_pixel_metrics;

GRAD_API GRAD_NODISCARD grad_status grad_pixel_metrics_create(grad_pixel_metrics **out);
/* Frees the accumulator; NULL is a no-op. */
GRAD_API void grad_pixel_metrics_free(grad_pixel_metrics *pm);

/*
 * Adds one map; mask NULL means a good image (every pixel normal). The
 * defect regions of the mask are its 8-connected components. On failure
 * (NaN in the map, out of memory) nothing is added.
 */
GRAD_API GRAD_NODISCARD grad_status grad_pixel_metrics_add(grad_pixel_metrics *pm,
                                                           const float *map,
                                                           const uint8_t *mask, int width,
                                                           int height);

/* Pixels added so far, and defect regions among them. */
GRAD_API size_t grad_pixel_metrics_pixels(const grad_pixel_metrics *pm);
GRAD_API size_t grad_pixel_metrics_regions(const grad_pixel_metrics *pm);

/* Pixel AUROC over every pixel added, as grad_eval_auroc. */
GRAD_API GRAD_NODISCARD grad_status grad_pixel_metrics_auroc(grad_pixel_metrics *pm,
                                                             double *auroc);

/* Pixel F1-max and its threshold (may be NULL), as grad_eval_f1_max. */
GRAD_API GRAD_NODISCARD grad_status grad_pixel_metrics_f1_max(grad_pixel_metrics *pm,
                                                              double *f1, float *threshold);

/*
 * AUPRO as the MVTec AD evaluation code computes it: at threshold t,
 * FPR(t) = the fraction of normal pixels with score >= t, PRO(t) = the mean
 * over all defect regions of the fraction of the region's pixels with
 * score >= t. The curve through every distinct score, from (0, 0) to (1, 1),
 * is integrated by trapezoids for FPR in [0, fpr_limit], interpolating
 * linearly at fpr_limit, and divided by fpr_limit (so a perfect map gives 1).
 * fpr_limit in (0, 1]; use GRAD_AUPRO_FPR_LIMIT. Needs normal pixels and at
 * least one region.
 */
GRAD_API GRAD_NODISCARD grad_status grad_pixel_metrics_aupro(grad_pixel_metrics *pm,
                                                             double fpr_limit, double *aupro);

/* ---- Synthetic data set --------------------------------------------------
 * A small procedurally generated data set in the MVTec AD layout, for
 * demos, tests and CI without downloads:
 *   DIR/CLASS/train/good/NNN.png, DIR/CLASS/test/good/NNN.png,
 *   DIR/CLASS/test/DEFECT/NNN.png, DIR/CLASS/ground_truth/DEFECT/NNN_mask.png
 * Masks are 0/255 gray PNGs marking exactly the pixels the defect changed.
 * The same options give byte-identical files on every platform.
 */
typedef struct grad_synth_options {
  size_t struct_size;     /* sizeof(grad_synth_options), set by _init */
  const char *out_dir;    /* created when missing (with its parents) */
  uint64_t seed;          /* default 1 */
  int size;               /* square image side in pixels, 32..4096; default 128 */
  int train_count;        /* train/good images per class; default 40 */
  int test_count;         /* test images per class; default 20: a quarter
                             (rounded up) good, the rest spread over the
                             class's defect types in turn */
  const char *category;   /* one class by name, or NULL for all (default) */
} grad_synth_options;

GRAD_API void grad_synth_options_init(grad_synth_options *opts);

/* Writes the data set (each file atomically). */
GRAD_API GRAD_NODISCARD grad_status grad_synth_write(const grad_synth_options *opts);

/* The class names, index 0.. ; NULL past the last. */
GRAD_API const char *grad_synth_category_name(int index);

/* The defect types of a class, index 0.. ; NULL past the last or for an
 * unknown class. */
GRAD_API const char *grad_synth_defect_name(const char *category, int index);

#ifdef __cplusplus
}
#endif

#endif /* GRAD_EVAL_H */
