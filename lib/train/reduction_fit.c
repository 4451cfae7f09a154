/*
 * The experimental public fit of the channel reduction (<grad/reduction.h>).
 * As in lib/model/reduction.c, the public handles are the internal
 * grad__pca_fit and grad__pca behind incomplete types, so a fitted
 * reduction is applied by the same grad_reduction_apply as a model's.
 */
#include <grad/reduction.h>

#include "pca.h"

static grad__pca_fit *fit_of(grad_reduction_fit *fit) { return (grad__pca_fit *)(void *)fit; }

grad_status grad_reduction_fit_create(int input_channels, grad_reduction_fit **out) {
  if (!out) return grad__fail(GRAD_E_INVALID_ARG, "grad_reduction_fit_create: out is NULL");
  grad__pca_fit *fit = NULL;
  grad_status s = grad__pca_fit_create(input_channels, &fit);
  *out = (grad_reduction_fit *)(void *)fit;
  return s;
}

void grad_reduction_fit_free(grad_reduction_fit *fit) { grad__pca_fit_free(fit_of(fit)); }

grad_status grad_reduction_fit_add(grad_reduction_fit *fit, grad_workspace *ws, const float *raw,
                                   int n, size_t positions) {
  if (!fit || !ws || !raw || n < 1 || positions == 0)
    return grad__fail(GRAD_E_INVALID_ARG, "grad_reduction_fit_add: %s",
                      n < 1 ? "n < 1" : positions == 0 ? "positions is 0" : "NULL argument");
  grad__ws_reset(ws);
  return grad__pca_fit_add(fit_of(fit), raw, n, positions, ws);
}

grad_status grad_reduction_fit_finish(const grad_reduction_fit *fit, int channels,
                                      grad_reduction **out) {
  if (!out) return grad__fail(GRAD_E_INVALID_ARG, "grad_reduction_fit_finish: out is NULL");
  grad__pca *pca = NULL;
  grad_status s = grad__pca_fit_finish((const grad__pca_fit *)(const void *)fit, channels, &pca);
  *out = (grad_reduction *)(void *)pca;
  return s;
}

void grad_reduction_free(grad_reduction *reduction) {
  grad__pca_free((grad__pca *)(void *)reduction);
}
