/* Depthwise convolution by shifted row sweeps: for each tap, the rows and
 * columns where it reads inside the image are one contiguous range, so the
 * inner loop is a plain multiply-add over a row (vectorised, no branches),
 * in per-ISA builds (isa_internal.h) that round alike. */
#include <string.h>

#include "conv.h"
#include "depthwise.h"
#include "isa_internal.h"

typedef struct dw_job {
  const float *x, *weight, *dy;
  float *y, *dx, *dweight;
  int n, channels, h, w, kernel;
} dw_job;

/* The output range [lo, hi) along an axis of size `size` for tap offset d
 * (input index = output index + d). */
INLINE void tap_range(int size, int d, int *lo, int *hi) {
  *lo = d < 0 ? -d : 0;
  *hi = d > 0 ? size - d : size;
}

INLINE void forward_plane(const float *x, const float *k, int h, int w, int kernel, float *y) {
  const int r = kernel / 2;
  memset(y, 0, sizeof(float) * (size_t)h * w);
  for (int ky = 0; ky < kernel; ky++)
    for (int kx = 0; kx < kernel; kx++) {
      const float wt = k[ky * kernel + kx];
      int y0, y1, x0, x1;
      tap_range(h, ky - r, &y0, &y1);
      tap_range(w, kx - r, &x0, &x1);
      for (int oy = y0; oy < y1; oy++) {
        const float *in = x + (size_t)(oy + ky - r) * w + (kx - r);
        float *out = y + (size_t)oy * w;
        for (int ox = x0; ox < x1; ox++) out[ox] += wt * in[ox];
      }
    }
}

/* Parts split the channels: each weight's gradient is then summed by one part. */
INLINE void channel_span(const dw_job *j, int part, int parts, int *c0, int *c1) {
  *c0 = (int)((long long)j->channels * part / parts);
  *c1 = (int)((long long)j->channels * (part + 1) / parts);
}

INLINE void forward_body(void *ctx, int part, int parts) {
  const dw_job *j = ctx;
  const size_t plane = (size_t)j->h * j->w;
  const int kk = j->kernel * j->kernel;
  int c0, c1;
  channel_span(j, part, parts, &c0, &c1);
  for (int i = 0; i < j->n; i++)
    for (int c = c0; c < c1; c++) {
      size_t at = ((size_t)i * j->channels + c) * plane;
      forward_plane(j->x + at, j->weight + (size_t)c * kk, j->h, j->w, j->kernel, j->y + at);
    }
}

GRAD_PART_BUILDS(forward_part, forward_body)

void grad__depthwise_conv2d(const float *x, const float *weight, int n, int channels, int h,
                            int w, int kernel, float *y) {
  dw_job job = {x, weight, NULL, y, NULL, NULL, n, channels, h, w, kernel};
  int parts = grad__parallel_width((size_t)n * channels * h * w * kernel);
  grad__parallel(parts < channels ? parts : channels, forward_part_pick(), &job);
}

/* Columns a weight gradient's partial sums cover at once (on the stack). */
enum { GRAD_COLUMNS = 64 };

/* d weight of one tap over one plane: per column over the rows (a loop the
 * compiler vectorises), then the columns in double. */
INLINE double tap_weight_grad(const float *x, const float *dy, int w, int y0, int y1, int x0,
                              int x1, int dy_off, int dx_off) {
  double sum = 0.0;
  for (int cx = x0; cx < x1; cx += GRAD_COLUMNS) {
    const int count = x1 - cx < GRAD_COLUMNS ? x1 - cx : GRAD_COLUMNS;
    float column[GRAD_COLUMNS] = {0};
    for (int oy = y0; oy < y1; oy++) {
      const float *g = dy + (size_t)oy * w + cx;
      const float *in = x + (size_t)(oy + dy_off) * w + cx + dx_off;
      for (int t = 0; t < count; t++) column[t] += g[t] * in[t];
    }
    for (int t = 0; t < count; t++) sum += column[t];
  }
  return sum;
}

INLINE void backward_body(void *ctx, int part, int parts) {
  const dw_job *j = ctx;
  const size_t plane = (size_t)j->h * j->w;
  const int kernel = j->kernel, kk = kernel * kernel, r = kernel / 2, w = j->w;
  int c0, c1;
  channel_span(j, part, parts, &c0, &c1);
  for (int c = c0; c < c1; c++) {
    const float *k = j->weight + (size_t)c * kk;
    for (int ky = 0; ky < kernel; ky++)
      for (int kx = 0; kx < kernel; kx++) {
        const float wt = k[ky * kernel + kx];
        int y0, y1, x0, x1;
        tap_range(j->h, ky - r, &y0, &y1);
        tap_range(w, kx - r, &x0, &x1);
        double sum = 0.0;
        for (int i = 0; i < j->n; i++) {
          const size_t at = ((size_t)i * j->channels + c) * plane;
          if (j->dweight)
            sum += tap_weight_grad(j->x + at, j->dy + at, w, y0, y1, x0, x1, ky - r, kx - r);
          if (!j->dx) continue;
          for (int oy = y0; oy < y1; oy++) {
            const float *g = j->dy + at + (size_t)oy * w;
            float *d = j->dx + at + (size_t)(oy + ky - r) * w + (kx - r);
            for (int ox = x0; ox < x1; ox++) d[ox] += wt * g[ox];
          }
        }
        if (j->dweight) j->dweight[(size_t)c * kk + ky * kernel + kx] += (float)sum;
      }
  }
}

GRAD_PART_BUILDS(backward_part, backward_body)

void grad__depthwise_conv2d_backward(const float *x, const float *weight, const float *dy,
                                     int n, int channels, int h, int w, int kernel, float *dx,
                                     float *dweight) {
  dw_job job = {x, weight, dy, NULL, dx, dweight, n, channels, h, w, kernel};
  int parts = grad__parallel_width((size_t)n * channels * h * w * kernel);
  grad__parallel(parts < channels ? parts : channels, backward_part_pick(), &job);
}
