/*
 * The training convolutions (the decoder's 3x3 and 1x1 output convs, the
 * local coordinate net's 1x1 convs with their bias): on oneDNN when libgrad is built with it (its primitives cached in
 * the store, made on first use), else im2col + OpenBLAS (conv.h). One place
 * decides, so the forward and the backward always use the same engine.
 */
#include <string.h>

#include "conv_backward.h"
#include "store_impl.h"

#ifdef GRAD_HAVE_ONEDNN
#include "conv_dnnl.h"

static grad_status engine(grad_store *s, grad__conv_dnnl_set **out) {
  if (!s->dnnl) {
    grad_status st = grad__conv_dnnl_set_create(&s->dnnl);
    if (st != GRAD_OK) return st;
  }
  *out = s->dnnl;
  return GRAD_OK;
}
#endif

grad_status grad__store_conv_forward(grad_store *s, const grad__conv *conv, const float *weight,
                                     const float *bias, const float *x, int n, float *y,
                                     grad_workspace *ws) {
  const int h = s->config.height, w = s->config.width;
#ifdef GRAD_HAVE_ONEDNN
  grad__conv_dnnl_set *set;
  grad_status st = engine(s, &set);
  if (st == GRAD_OK)
    st = grad__conv_dnnl_forward(set, conv, s->train_precision, weight, x, n, h, w, y, ws);
  if (st == GRAD_OK && bias) { /* as the im2col engine adds it: y + bias in float */
    const size_t plane = (size_t)grad__conv_out_size(conv, h) * grad__conv_out_size(conv, w);
    for (int i = 0; i < n; i++)
      for (int c = 0; c < conv->out_channels; c++) {
        float *row = y + ((size_t)i * conv->out_channels + c) * plane;
        for (size_t j = 0; j < plane; j++) row[j] += bias[c];
      }
  }
  return st;
#else
  return grad__conv2d(conv, weight, bias, false, x, n, h, w, y, ws);
#endif
}

static grad_status conv_backward(grad_store *s, const grad__conv *conv, const float *weight,
                                 const float *x, int n, const float *dy, float *dx, bool dx_set,
                                 float *dweight, float *dbias, grad_workspace *ws) {
  const int h = s->config.height, w = s->config.width;
#ifdef GRAD_HAVE_ONEDNN
  grad__conv_dnnl_set *set;
  grad_status st = engine(s, &set);
  if (st == GRAD_OK && (dx || dweight))
    st = grad__conv_dnnl_backward(set, conv, s->train_precision, weight, x, n, h, w, dy, dx,
                                  dx_set, dweight, ws);
  if (st == GRAD_OK && dbias)
    grad__conv_bias_backward(dy, n, conv->out_channels,
                             (size_t)grad__conv_out_size(conv, h) * grad__conv_out_size(conv, w),
                             dbias);
  return st;
#else
  if (dx && dx_set) memset(dx, 0, sizeof(float) * (size_t)n * conv->in_channels * h * w);
  return grad__conv2d_backward(conv, weight, x, n, h, w, dy, dx, dweight, dbias, ws);
#endif
}

grad_status grad__store_conv_backward(grad_store *s, const grad__conv *conv,
                                      const float *weight, const float *x, int n,
                                      const float *dy, float *dx, float *dweight, float *dbias,
                                      grad_workspace *ws) {
  return conv_backward(s, conv, weight, x, n, dy, dx, false, dweight, dbias, ws);
}

grad_status grad__store_conv_backward_set(grad_store *s, const grad__conv *conv,
                                          const float *weight, const float *x, int n,
                                          const float *dy, float *dx, float *dweight,
                                          float *dbias, grad_workspace *ws) {
  return conv_backward(s, conv, weight, x, n, dy, dx, true, dweight, dbias, ws);
}
