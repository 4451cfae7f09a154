/*
 * The training convolutions of the decoder (3x3 and the 1x1 output, no
 * bias): on oneDNN when libgrad is built with it (its primitives cached in
 * the store, made on first use), else im2col + OpenBLAS (conv.h). One place
 * decides, so the forward and the backward always use the same engine.
 */
#include "conv_backward.h"
#include "store_impl.h"

#ifdef GRAD_HAVE_DNNL
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
                                     const float *x, int n, float *y, grad_workspace *ws) {
  const int h = s->config.height, w = s->config.width;
#ifdef GRAD_HAVE_DNNL
  grad__conv_dnnl_set *set;
  grad_status st = engine(s, &set);
  return st == GRAD_OK ? grad__conv_dnnl_forward(set, conv, weight, x, n, h, w, y, ws) : st;
#else
  return grad__conv2d(conv, weight, NULL, false, x, n, h, w, y, ws);
#endif
}

grad_status grad__store_conv_backward(grad_store *s, const grad__conv *conv,
                                      const float *weight, const float *x, int n,
                                      const float *dy, float *dx, float *dweight,
                                      grad_workspace *ws) {
  const int h = s->config.height, w = s->config.width;
#ifdef GRAD_HAVE_DNNL
  grad__conv_dnnl_set *set;
  grad_status st = engine(s, &set);
  return st == GRAD_OK
             ? grad__conv_dnnl_backward(set, conv, weight, x, n, h, w, dy, dx, dweight, ws)
             : st;
#else
  return grad__conv2d_backward(conv, weight, x, n, h, w, dy, dx, dweight, NULL, ws);
#endif
}
