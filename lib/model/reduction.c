/*
 * The public handle of the channel reduction (<grad/reduction.h>). The
 * handle is the model's grad__pca itself behind the incomplete type
 * grad_reduction, so the internal struct and its calls (lib/train/pca.h)
 * stay as they are; fitting it is training's.
 */
#include <math.h>

#include "model_internal.h"

static const grad__pca *pca_of(const grad_reduction *reduction) {
  return (const grad__pca *)(const void *)reduction;
}

const grad_reduction *grad__reduction_of(const grad__pca *pca) {
  return (const grad_reduction *)(const void *)pca;
}

int grad_reduction_input_channels(const grad_reduction *reduction) {
  return reduction ? pca_of(reduction)->raw_channels : 0;
}

int grad_reduction_channels(const grad_reduction *reduction) {
  return reduction ? pca_of(reduction)->channels : 0;
}

double grad_reduction_retained_variance(const grad_reduction *reduction) {
  return reduction ? pca_of(reduction)->retained : NAN;
}

grad_status grad_reduction_apply(const grad_reduction *reduction, grad_workspace *ws,
                                 const float *raw, int n, size_t positions, float *out) {
  if (!reduction || !ws || !raw || !out || n < 1 || positions == 0)
    return grad__fail(GRAD_E_INVALID_ARG, "grad_reduction_apply: %s",
                      n < 1 ? "n < 1" : positions == 0 ? "positions is 0" : "NULL argument");
  const grad__pca *pca = pca_of(reduction);
  size_t total;
  if (!grad__mul_size((size_t)n * (size_t)pca->raw_channels, positions, &total))
    return grad__fail(GRAD_E_TOO_LARGE, "grad_reduction_apply: %d x %d x %zu floats", n,
                      pca->raw_channels, positions);
  grad__ws_reset(ws);
  return grad__pca_apply(pca, raw, n, positions, out, ws);
}
