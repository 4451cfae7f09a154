/* libgrad: the model a user trains, saves, loads and scores with. */
#ifndef GRAD_MODEL_H
#define GRAD_MODEL_H

#include <grad/common.h>
#include <grad/image.h>
#include <grad/backbone.h>
#include <grad/reduction.h>
#include <grad/store.h>
#include <grad/head.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * A model bundles the backbone, the channel reduction, the grid feature
 * store and the scoring head with its calibrated thresholds. A loaded or
 * trained model is read-only: any number of threads may score with it at
 * once, each with its own grad_context.
 *
 * Contracts of every call below, unless its comment says otherwise:
 *  - A call that returns grad_status leaves a message for grad_last_error()
 *    on failure, and sets *out to NULL first, so a failed call never hands
 *    out a half-made handle. NULL arguments are GRAD_E_INVALID_ARG.
 *  - Getters accept NULL and then return 0, NaN or NULL as stated.
 *  - Handles returned through *out belong to the caller, who frees them
 *    with the matching _free; pointers returned by getters are borrowed
 *    from the handle and valid until it is freed.
 */
typedef struct grad_model grad_model;

/* Per-thread scratch for scoring: one thread at a time uses a context.
 * Created for one model and valid only with it. */
typedef struct grad_context grad_context;

/* What scoring one image produced; owns its anomaly map and mask. A result
 * is independent of the model and context once made (free it any time). */
typedef struct grad_result grad_result;

/*
 * Loads a model file, validating every tensor and the format version.
 * Errors: GRAD_E_IO (cannot open or read), GRAD_E_FORMAT (corrupt, or not a
 * libgrad model, or without an image threshold: the message names the path
 * and the tensor or field), GRAD_E_VERSION (a newer format), GRAD_E_MISSING
 * / GRAD_E_SHAPE (a tensor absent or of the wrong shape), GRAD_E_NUMERIC (a
 * NaN or Inf weight), GRAD_E_NOMEM. Thread-safe; the model is the caller's
 * (grad_model_free).
 */
GRAD_API GRAD_NODISCARD grad_status grad_model_load(const char *path, grad_model **out);

/*
 * Saves atomically: an existing file at path stays intact until the new
 * one is complete. Errors: GRAD_E_INVALID_ARG (NULL argument), GRAD_E_IO
 * (naming the path), GRAD_E_NOMEM. Safe while other threads score with the
 * model (it is only read).
 */
GRAD_API GRAD_NODISCARD grad_status grad_model_save(const grad_model *model, const char *path);

/* Frees the model and the parts it owns (grad_model_backbone() and the
 * others become invalid); NULL is a no-op. Free every
 * context first, and never while another thread uses the model. Results
 * stay valid. */
GRAD_API void grad_model_free(grad_model *model);

/* The square input size S the images are resized to; 0 for NULL. */
GRAD_API int grad_model_input_size(const grad_model *model);
/* The calibrated image-score threshold (raw score units); NaN for NULL. */
GRAD_API double grad_model_image_threshold(const grad_model *model);

/* ---- Memory, known before it is allocated ----
 * A model file's tensors, as the model will hold them in memory (float32):
 * read from the file's header without loading it. */
GRAD_API GRAD_NODISCARD grad_status grad_model_file_bytes(const char *path, size_t *bytes);
/* What a loaded model holds: weights, reduction, grids and statistics (the
 * file's tensors, grad_model_file_bytes). */
GRAD_API size_t grad_model_bytes(const grad_model *model);
/* What the model's engines hold besides: the copies of its weights laid
 * out for this CPU (oneDNN's layouts, BatchNorm folded in; Winograd's copy
 * of a 3x3 convolution is 4 times its weights), made when the model is
 * loaded and after grad_model_compute_set, at its next scoring call; 0
 * without oneDNN. Depends on the CPU, so a file cannot say it. Thread-safe. */
GRAD_API size_t grad_model_engine_bytes(const grad_model *model);
/* What one grad_context of this model allocates: its buffers and the
 * workspace of a scoring pass, measured once when the model was loaded or
 * trained. A context reserves all of it when created, so its workspace
 * does not grow while scoring (results and image resizing allocate their
 * own, image-sized buffers). */
GRAD_API size_t grad_context_bytes(const grad_model *model);

/* A scoring context for model: reserves grad_context_bytes(model) at once.
 * Errors: GRAD_E_INVALID_ARG (NULL argument), GRAD_E_NOMEM. Thread-safe
 * (contexts for one model may be created from several threads). */
GRAD_API GRAD_NODISCARD grad_status grad_context_create(const grad_model *model,
                                                        grad_context **out);
/* Frees the context; NULL is a no-op. */
GRAD_API void grad_context_free(grad_context *ctx);
/*
 * How the model computes: grad_backbone_compute_set on its backbone (same
 * errors; GRAD_E_INVALID_ARG for a NULL model), and the precision also for
 * its BasicBlock decoder where that runs on oneDNN. Call it after loading,
 * before contexts score: not thread-safe. GRAD_PRECISION_BF16 moves the
 * scores a little (docs/backbone.md gives the AUROC measured); the default
 * is fp32 on the best engine.
 */
GRAD_API GRAD_NODISCARD grad_status grad_model_compute_set(grad_model *model, grad_engine engine,
                                                           grad_precision precision);
/* Threads of the scoring calls made with this context (see
 * grad_workspace_threads_set); threads <= 0 returns to the process default
 * (grad_threads_set). NULL is a no-op. */
GRAD_API void grad_context_threads_set(grad_context *ctx, int threads);

/*
 * Scores one image: score, decision, map at the image's own size, mask
 * (docs/method.md section 7). The image is any size; it is resized to S x S
 * for the network. Errors: GRAD_E_INVALID_ARG (a NULL argument, or ctx made
 * for another model), GRAD_E_TOO_LARGE (more pixels than
 * grad_image_limits.max_pixels), GRAD_E_NUMERIC, GRAD_E_NOMEM. Thread-safe
 * with one context per thread: ctx is modified, model and image are only
 * read. The result is the caller's (grad_result_free). Which thread or
 * context scores does not change the result; the kernels' thread count
 * (grad_threads_set) may, in the last digits.
 */
GRAD_API GRAD_NODISCARD grad_status grad_model_score(const grad_model *model, grad_context *ctx,
                                                     const grad_image *image,
                                                     grad_result **out);

/*
 * Scores count images with one context, giving what count calls of
 * grad_model_score would (equal up to float rounding), faster: the images
 * go through the backbone, the reduction and the store in groups of 8
 * (docs/scoring.md has the measured speed-up). results must hold count
 * pointers; each gets a new result to free with grad_result_free. On
 * failure every results[i] is NULL and the message names the image (index
 * in the call) at fault. The first call allocates the context's buffers
 * for a group (8 times a single image's input and feature maps), on top of
 * grad_context_bytes.
 */
GRAD_API GRAD_NODISCARD grad_status grad_model_score_batch(const grad_model *model,
                                                           grad_context *ctx,
                                                           const grad_image *const *images,
                                                           size_t count, grad_result **results);

/* Frees a result and its map and mask; NULL is a no-op. */
GRAD_API void grad_result_free(grad_result *result);

/* The raw image score (max of the 32x32-pooled, smoothed map); NaN for NULL. */
GRAD_API double grad_result_score(const grad_result *result);
/* The score mapped so that the calibrated threshold is 0.5, in [0, 1]; NaN
 * for NULL. */
GRAD_API double grad_result_normalized_score(const grad_result *result);
/* 1 when the score is at or above the image threshold, else 0 (also for
 * NULL). */
GRAD_API int grad_result_is_anomalous(const grad_result *result);
/* The scored image's size; 0 for NULL. */
GRAD_API int grad_result_width(const grad_result *result);
GRAD_API int grad_result_height(const grad_result *result);
/* The anomaly map, width x height floats (row-major) at the scored image's
 * size, owned by the result; NULL for NULL. */
GRAD_API const float *grad_result_map(const grad_result *result);
/* The binary mask (0 or 255, width x height) of pixels at or above the
 * pixel threshold, owned by the result. NULL when the model has no pixel
 * threshold and for NULL: check before reading it. */
GRAD_API const uint8_t *grad_result_mask(const grad_result *result);


/* What the model was trained on (folders), for people; owned by the
 * model; never NULL ("" for NULL). Signs
 * of degenerate training follow as "; warning: ..." (fewer than 10
 * held-out images to calibrate on, none, a folder given twice). */
GRAD_API const char *grad_model_description(const grad_model *model);

/*
 * Provenance: how the model was made, recorded by training and kept in the
 * model file (metadata "provenance.KEY", listed by `grad info`). Values
 * are text (numbers in decimal, lists and options as JSON). The keys
 * written by this version:
 *   library_version  the libgrad version that trained the model
 *   date             when training finished, UTC, "2026-11-30T04:50:00Z"
 *                    (the environment's SOURCE_DATE_EPOCH, when set, fixes it)
 *   status           "complete", or "cancelled" (stopped by the progress callback)
 *   source           "folders", "files" or "memory": grad_model_train,
 *                    grad_model_train_files or grad_model_train_images
 *   folders          JSON array of the folders' names relative to their common
 *                    parent (for files: the folders holding them, a category's
 *                    CLASS/train/good counting as CLASS; [] for memory)
 *   images           images trained on (held-out ones not counted)
 *   holdout_images   images held out to calibrate the thresholds
 *   epochs           epochs completed
 *   seed             the training seed (grad_train_options.seed)
 *   model_options    JSON object: arch, weights (the file's name, or null for
 *                    random weights), random_seed, layers, input_size,
 *                    output_stride, channels, decoder ("basic" or "crad"),
 *                    blocks, local_res, global_res,
 *                    holdout_fraction
 *   train_options    JSON object: epochs (asked for), batch, lr_grid, lr_net,
 *                    weight_decay, lr_step_epochs, lr_gamma, clip_norm,
 *                    noise_prob, noise_std, seed, resumed (true or false)
 * Later versions may add keys; models saved before provenance have none.
 */
/* The value of key, or NULL when the model has none. Owned by the model. */
GRAD_API const char *grad_model_provenance(const grad_model *model, const char *key);
/* The number of provenance entries, and the key of entry index (NULL past the end). */
GRAD_API size_t grad_model_provenance_count(const grad_model *model);
GRAD_API const char *grad_model_provenance_key(const grad_model *model, size_t index);

/* ---- The parts of a model ----
 * The four stages of grad_model_score, for callers who compose their own
 * pipeline (their own backbone with our store and head, say):
 *   image -> grad_image_to_tensor -> grad_backbone_features
 *         -> grad_reduction_apply -> grad_store_reconstruct
 *         -> grad_head_map (R = reconstruction, F = reduced features)
 *         -> grad_head_resize_map,
 * which gives what grad_model_score gives (the mask and decision follow
 * from the head's thresholds). Each part is borrowed from the model: never
 * free it, and do not use it after grad_model_free. They are read-only, so
 * any number of threads may use them at once, each with its own workspace.
 * NULL for a NULL model. */
GRAD_API const grad_backbone *grad_model_backbone(const grad_model *model);
GRAD_API const grad_reduction *grad_model_reduction(const grad_model *model);
GRAD_API const grad_store *grad_model_store(const grad_model *model);
GRAD_API const grad_head *grad_model_head(const grad_model *model);


#ifdef __cplusplus
}
#endif

#endif /* GRAD_MODEL_H */
