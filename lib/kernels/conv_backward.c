/* Convolution backward: one im2col and two sgemms per image. */

#include "conv_backward.h"

grad_status grad__conv2d_backward(const grad__conv *conv, const float *weight, const float *x,
                                  int n, int h, int w, const float *dy, float *dx,
                                  float *dweight, float *dbias, grad_workspace *ws) {
  const int oh = grad__conv_out_size(conv, h), ow = grad__conv_out_size(conv, w);
  if (oh <= 0 || ow <= 0)
    return grad__fail(GRAD_E_SHAPE, "convolution input %dx%d is smaller than its %dx%d kernel",
                      h, w, conv->kernel, conv->kernel);
  const int cin = conv->in_channels, cout = conv->out_channels;
  const int depth = cin * conv->kernel * conv->kernel;
  const int out_plane = oh * ow;
  const size_t in_size = (size_t)cin * h * w, out_size = (size_t)cout * out_plane;
  const bool direct = conv->kernel == 1 && conv->stride == 1 && conv->pad == 0;

  size_t mark = grad__ws_mark(ws);
  float *columns = NULL;
  if (!direct && (dx || dweight)) {
    columns = grad__ws_floats(ws, (size_t)depth * out_plane);
    if (!columns) return GRAD_E_NOMEM;
  }
  grad_status memory = grad__blas_memory_check("convolution gradient");
  if (memory != GRAD_OK) {
    grad__ws_release(ws, mark);
    return memory;
  }
  for (int i = 0; i < n; i++) {
    const float *g = dy + (size_t)i * out_size;
    if (dbias) grad__conv_bias_backward(g, 1, cout, (size_t)out_plane, dbias);
    if (dweight) {
      const float *cols = x + (size_t)i * in_size;
      if (!direct) {
        grad__im2col(conv, cols, h, w, columns);
        cols = columns;
      }
      grad__sgemm(false, true, cout, depth, out_plane, 1.0f, g, out_plane, cols, out_plane, 1.0f,
                  dweight, depth, grad__threads(ws));
    }
    if (dx) {
      float *d = dx + (size_t)i * in_size;
      if (direct) {
        grad__sgemm(true, false, depth, out_plane, cout, 1.0f, weight, depth, g, out_plane, 1.0f,
                    d, out_plane, grad__threads(ws));
      } else {
        grad__sgemm(true, false, depth, out_plane, cout, 1.0f, weight, depth, g, out_plane, 0.0f,
                    columns, out_plane, grad__threads(ws));
        grad__col2im(conv, columns, h, w, d);
      }
    }
  }
  grad__ws_release(ws, mark);
  return GRAD_OK;
}

void grad__conv_bias_backward(const float *dy, int n, int channels, size_t plane, float *dbias) {
  for (int i = 0; i < n; i++)
    for (int c = 0; c < channels; c++) {
      const float *g = dy + ((size_t)i * channels + c) * plane;
      double s = 0.0;
      for (size_t j = 0; j < plane; j++) s += g[j];
      dbias[c] += (float)s;
    }
}
