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
 * from the model (never freed by the caller, valid while the model lives)
 * and read-only: any number of threads may apply it at once, each with its
 * own workspace.
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

#ifdef __cplusplus
}
#endif

#endif /* GRAD_REDUCTION_H */
