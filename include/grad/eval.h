/* libgrad: Evaluation: metrics (AUROC, AUPRO, F1-max; docs/method.md section 8),
 * a model evaluated on an MVTec-layout category, and heatmap overlays. */
#ifndef GRAD_EVAL_H
#define GRAD_EVAL_H

#include <grad/common.h>
#include <grad/image.h>
#include <grad/model.h>

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

/* ---- Evaluation on an MVTec-layout category (docs/method.md section 8) ---- */

/*
 * What grad_model_evaluate measured. An output struct, versioned like the
 * option structs: prepare it with grad_eval_summary_init(&s, sizeof s); the
 * library writes only the fields the caller's struct_size covers (and zeroes
 * any it does not know, from a newer header).
 */
typedef struct grad_eval_summary {
  size_t struct_size;    /* the caller's sizeof(grad_eval_summary), set by _init */
  double image_auroc;    /* never flipped: below 0.5 is reported as it is */
  double pixel_auroc;    /* over every test pixel at S x S */
  double aupro;          /* integrated to FPR 0.3, normalised */
  double image_f1_max;
  double pixel_f1_max;
  int images;            /* test images scored */
  int anomalous_images;  /* of which defective */
  double seconds;        /* wall time of the scoring (decode + model) */
} grad_eval_summary;

/* Zeroes struct_size bytes at summary and sets its struct_size; NULL is a
 * no-op. */
GRAD_API void grad_eval_summary_init(grad_eval_summary *summary, size_t struct_size);

/* Called after each test image is scored; non-zero stops the evaluation
 * with GRAD_E_CANCELLED. defect is "good" for normal images. */
typedef int (*grad_eval_image_fn)(const char *path, const char *defect, const grad_image *image,
                                  const grad_result *result, int index, int total, void *user);

/*
 * Scores every image of CATEGORY/test and computes the metrics against
 * CATEGORY/ground_truth masks, resized to S x S with nearest neighbour as
 * the maps are compared at S x S. A category without a ground_truth folder
 * (image labels only) gets its image metrics, and NaN for pixel_auroc,
 * aupro and pixel_f1_max (absent); with the folder, a defect image without
 * its mask is GRAD_E_MISSING naming the first one. on_image may be NULL.
 * summary must have been prepared with grad_eval_summary_init. Images are
 * scored in groups of 8 with grad_model_score_batch (so ctx holds a group's
 * buffers afterwards); on_image still sees them one by one, in order.
 */
GRAD_API GRAD_NODISCARD grad_status grad_model_evaluate(const grad_model *model,
                                                        grad_context *ctx,
                                                        const char *category,
                                                        grad_eval_image_fn on_image, void *user,
                                                        grad_eval_summary *summary);

/*
 * The MVTec-layout categories under root, for grad_model_evaluate and
 * grad_model_train: root itself when it is one (it holds train/good or
 * test), else the folders directly inside root that are, sorted by path
 * (hidden ones skipped). *paths receives a new NULL-terminated array of
 * *count new strings (ROOT/CLASS), the caller's to free with
 * grad_categories_free. Errors: GRAD_E_INVALID_ARG (a NULL argument),
 * GRAD_E_IO (root cannot be listed: the message names it and why),
 * GRAD_E_MISSING (no category there), GRAD_E_NOMEM. On failure *paths is
 * NULL and *count 0. Thread-safe.
 */
GRAD_API GRAD_NODISCARD grad_status grad_categories_find(const char *root, char ***paths,
                                                         size_t *count);

/* Frees an array from grad_categories_find and its strings; NULL is a no-op. */
GRAD_API void grad_categories_free(char **paths);

/*
 * A heatmap overlay for people: the anomaly map in a blue-to-red colour map
 * (the pixel threshold at the middle) blended over the image, with the
 * contour of the predicted defect mask drawn in white. A new RGB image of
 * the scored image's size.
 */
GRAD_API GRAD_NODISCARD grad_status grad_overlay_render(const grad_model *model,
                                                        const grad_image *image,
                                                        const grad_result *result,
                                                        grad_image **out);

#ifdef __cplusplus
}
#endif

#endif /* GRAD_EVAL_H */
