/* libgrad: The grid feature store and its decoder: reconstruction and training (docs/method.md sections 4-6). */
#ifndef GRAD_STORE_H
#define GRAD_STORE_H

#include <grad/common.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * The grid feature store with its coordinate nets and decoder: it maps a
 * feature map F (C x H x W) to its reconstruction R of the same shape.
 * A store is created by training or by loading a model (grad_model), which
 * then owns it and lends it through grad_model_store(). Once made it is only read, so any number of threads may
 * reconstruct with it at once, each with its own workspace.
 */
typedef struct grad_store grad_store;

/* Frees a store the caller owns; NULL is a no-op. Never call it on the
 * store of a model (grad_model_free frees that one). */
GRAD_API void grad_store_free(grad_store *store);

/* The feature shape the store works on: C, H and W; 0 for a NULL store. */
GRAD_API int grad_store_channels(const grad_store *store);
GRAD_API int grad_store_height(const grad_store *store);
GRAD_API int grad_store_width(const grad_store *store);

/*
 * Reconstructs n feature maps in inference mode (BatchNorm running
 * statistics): features and reconstruction are n x C x H x W float32,
 * N,C,H,W order, and must not overlap. The workspace is reset first, so
 * nothing else may live in it. Errors: GRAD_E_INVALID_ARG (a NULL pointer,
 * n < 1), GRAD_E_TOO_LARGE, GRAD_E_NOMEM. Thread-safe with distinct
 * workspaces; the store is not modified.
 */
GRAD_API GRAD_NODISCARD grad_status grad_store_reconstruct(const grad_store *store,
                                                           grad_workspace *ws,
                                                           const float *features, int n,
                                                           float *reconstruction);

#ifdef __cplusplus
}
#endif

#endif /* GRAD_STORE_H */
