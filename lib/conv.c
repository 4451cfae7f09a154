/* Convolution: im2col + one sgemm per image; 1x1 stride-1 skips im2col. */
#include <cblas.h>
#include <string.h>

#include "conv.h"

int grad__conv_out_size(const grad__conv *conv, int in) {
  int span = in + 2 * conv->pad - conv->kernel;
  return span < 0 ? 0 : span / conv->stride + 1;
}

void grad__im2col(const grad__conv *conv, const float *image, int h, int w, float *columns) {
  const int k = conv->kernel, s = conv->stride, p = conv->pad;
  const int oh = grad__conv_out_size(conv, h), ow = grad__conv_out_size(conv, w);
  for (int c = 0; c < conv->in_channels; c++) {
    const float *plane = image + (size_t)c * h * w;
    for (int ky = 0; ky < k; ky++) {
      for (int kx = 0; kx < k; kx++) {
        float *row = columns + ((size_t)(c * k + ky) * k + kx) * oh * ow;
        for (int oy = 0; oy < oh; oy++) {
          int iy = oy * s - p + ky;
          float *out = row + (size_t)oy * ow;
          if (iy < 0 || iy >= h) {
            memset(out, 0, sizeof(float) * ow);
            continue;
          }
          const float *in = plane + (size_t)iy * w;
          for (int ox = 0; ox < ow; ox++) {
            int ix = ox * s - p + kx;
            out[ox] = (ix >= 0 && ix < w) ? in[ix] : 0.0f;
          }
        }
      }
    }
  }
}

void grad__col2im(const grad__conv *conv, const float *columns, int h, int w, float *image) {
  const int k = conv->kernel, s = conv->stride, p = conv->pad;
  const int oh = grad__conv_out_size(conv, h), ow = grad__conv_out_size(conv, w);
  for (int c = 0; c < conv->in_channels; c++) {
    float *plane = image + (size_t)c * h * w;
    for (int ky = 0; ky < k; ky++) {
      for (int kx = 0; kx < k; kx++) {
        const float *row = columns + ((size_t)(c * k + ky) * k + kx) * oh * ow;
        for (int oy = 0; oy < oh; oy++) {
          int iy = oy * s - p + ky;
          if (iy < 0 || iy >= h) continue;
          float *out = plane + (size_t)iy * w;
          const float *in = row + (size_t)oy * ow;
          for (int ox = 0; ox < ow; ox++) {
            int ix = ox * s - p + kx;
            if (ix >= 0 && ix < w) out[ix] += in[ox];
          }
        }
      }
    }
  }
}

grad_status grad__conv2d(const grad__conv *conv, const float *weight, const float *bias,
                         bool relu, const float *x, int n, int h, int w, float *y,
                         grad_workspace *ws) {
  const int oh = grad__conv_out_size(conv, h), ow = grad__conv_out_size(conv, w);
  if (oh <= 0 || ow <= 0)
    return grad__fail(GRAD_E_SHAPE, "convolution input %dx%d is smaller than its %dx%d kernel",
                      h, w, conv->kernel, conv->kernel);
  const int cin = conv->in_channels, cout = conv->out_channels;
  const size_t depth = (size_t)cin * conv->kernel * conv->kernel;
  const size_t out_plane = (size_t)oh * ow;
  const bool direct = conv->kernel == 1 && conv->stride == 1 && conv->pad == 0;

  size_t mark = grad__ws_mark(ws);
  float *columns = NULL;
  if (!direct) {
    columns = grad__ws_floats(ws, depth * out_plane);
    if (!columns) return GRAD_E_NOMEM;
  }
  for (int i = 0; i < n; i++) {
    const float *image = x + (size_t)i * cin * h * w;
    float *out = y + (size_t)i * cout * out_plane;
    if (!direct) grad__im2col(conv, image, h, w, columns);
    if (bias) {
      for (int c = 0; c < cout; c++)
        for (size_t j = 0; j < out_plane; j++) out[c * out_plane + j] = bias[c];
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, cout, (int)out_plane, (int)depth,
                1.0f, weight, (int)depth, direct ? image : columns, (int)out_plane,
                bias ? 1.0f : 0.0f, out, (int)out_plane);
    if (relu) {
      for (size_t j = 0; j < (size_t)cout * out_plane; j++)
        if (out[j] < 0.0f) out[j] = 0.0f;
    }
  }
  grad__ws_release(ws, mark);
  return GRAD_OK;
}
