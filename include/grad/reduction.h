/* libgrad: the channel reduction between the backbone and the store
 * (docs/method.md section 3). */
#ifndef GRAD_REDUCTION_H
#define GRAD_REDUCTION_H

#include <grad/common.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * A fixed linear map from the C_raw backbone channels to the C channels the
 * store works on, fitted by PCA when a model is trained:
 *   y = P (x - mean) at every spatial position, P: C x C_raw with
 *   orthonormal rows (no whitening, so the features keep their scale).
 * When C_raw <= C it is the identity. A reduction is made by training or
 * loading a model and reached with grad_model_reduction(); it is borrowed
 * from the model (never freed by the caller, valid while the model lives).
 * One can also be fitted on one's own features (experimental, below), and
 * is then the caller's to free. Either is read-only: any number of threads
 * may apply it at once, each with its own workspace.
 */
typedef struct grad_reduction grad_reduction;

/* C_raw, the channels it reads (the backbone's); 0 for NULL. */
GRAD_API int grad_reduction_input_channels(const grad_reduction *reduction);
/* C, the channels it writes (the store's); 0 for NULL. */
GRAD_API int grad_reduction_channels(const grad_reduction *reduction);
/* The fraction of the training features' variance the C axes keep (1 for
 * the identity; NaN for NULL or when a model file did not record it). */
GRAD_API double grad_reduction_retained_variance(const grad_reduction *reduction);

/*
 * Reduces n feature maps: raw is n x C_raw x positions floats (N,C,H,W with
 * positions = H * W, as grad_backbone_features writes them), out receives
 * n x C x positions. raw and out must not overlap. The workspace is reset
 * first (nothing handed out from it before stays valid). Errors:
 * GRAD_E_INVALID_ARG (a NULL pointer, n < 1, positions 0),
 * GRAD_E_TOO_LARGE, GRAD_E_NOMEM. Thread-safe with distinct workspaces.
 */
GRAD_API GRAD_NODISCARD grad_status grad_reduction_apply(const grad_reduction *reduction,
                                                         grad_workspace *ws, const float *raw,
                                                         int n, size_t positions, float *out);

#ifdef GRAD_EXPERIMENTAL
/* ---- Fitting a reduction on one's own features (experimental) --------------
 * The PCA fit grad_model_train makes (docs/method.md section 3), for a
 * program that brings its own backbone features: feed the maps in any
 * number of calls (they need not all be in memory at once), then keep the
 * top C axes. Not yet promised: may change in any release.
 *
 *   grad_reduction_fit *fit = NULL;
 *   grad_reduction *reduction = NULL;
 *   grad_status s = grad_reduction_fit_create(c_raw, &fit);
 *   for (int i = 0; s == GRAD_OK && i < images; i++)
 *     s = grad_reduction_fit_add(fit, ws, raw[i], 1, h * w);
 *   if (s == GRAD_OK) s = grad_reduction_fit_finish(fit, 64, &reduction);
 *   grad_reduction_fit_free(fit);
 *   ...grad_reduction_apply(reduction, ws, raw[i], 1, h * w, reduced)...
 *   grad_reduction_free(reduction);
 *
 * An accumulator is not thread-safe: one thread at a time.
 */
typedef struct grad_reduction_fit grad_reduction_fit;

/* An empty accumulator for maps of input_channels (C_raw, 1..65536)
 * channels. Errors: GRAD_E_INVALID_ARG, GRAD_E_NOMEM; *out NULL on failure. */
GRAD_API GRAD_NODISCARD grad_status grad_reduction_fit_create(int input_channels,
                                                              grad_reduction_fit **out);
/* Frees the accumulator; NULL is a no-op. */
GRAD_API void grad_reduction_fit_free(grad_reduction_fit *fit);

/*
 * Adds n maps, raw: n x C_raw x positions floats (N,C,H,W with positions =
 * H * W): every position is one sample. The workspace is reset first.
 * Errors: GRAD_E_INVALID_ARG (a NULL pointer, n < 1, positions 0),
 * GRAD_E_NOMEM (also when a memory limit leaves no room for the BLAS).
 */
GRAD_API GRAD_NODISCARD grad_status grad_reduction_fit_add(grad_reduction_fit *fit,
                                                           grad_workspace *ws, const float *raw,
                                                           int n, size_t positions);

/*
 * The reduction to the top `channels` (C >= 1) principal axes of what was
 * added, as grad_model_train fits it (the identity when C_raw <= C): a new
 * handle, the caller's, freed with grad_reduction_free. The accumulator is
 * unchanged and may take more maps. Errors: GRAD_E_INVALID_ARG,
 * GRAD_E_STATE (nothing added), GRAD_E_NUMERIC (non-finite features),
 * GRAD_E_NOMEM; *out NULL on failure.
 */
GRAD_API GRAD_NODISCARD grad_status grad_reduction_fit_finish(const grad_reduction_fit *fit,
                                                              int channels,
                                                              grad_reduction **out);

/* Frees a reduction made by grad_reduction_fit_finish; NULL is a no-op.
 * Never call it on a model's reduction (grad_model_free frees that one). */
GRAD_API void grad_reduction_free(grad_reduction *reduction);
#endif /* GRAD_EXPERIMENTAL */

#ifdef __cplusplus
}
#endif

#endif /* GRAD_REDUCTION_H */
