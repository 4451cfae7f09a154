/* Box filter and average pool through a double integral image (box_filter.h). */
#include "box_filter.h"

size_t grad__integral_size(int h, int w) { return (size_t)(h + 1) * (size_t)(w + 1); }

void grad__integral_image(const float *in, int h, int w, double *integral) {
  const size_t stride = (size_t)w + 1;
  for (int x = 0; x <= w; x++) integral[x] = 0.0;
  for (int y = 0; y < h; y++) {
    const float *row = in + (size_t)y * w;
    const double *above = integral + (size_t)y * stride;
    double *here = integral + (size_t)(y + 1) * stride;
    double run = 0.0;
    here[0] = 0.0;
    for (int x = 0; x < w; x++) {
      run += row[x];
      here[x + 1] = above[x + 1] + run;
    }
  }
}

static inline int clamp_index(int v, int n) { return v < 0 ? 0 : (v > n ? n : v); }

void grad__box_filter(const float *in, int h, int w, int k, int pad, double scale,
                      float *out, double *integral) {
  const int oh = h + 2 * pad - k + 1, ow = w + 2 * pad - k + 1;
  if (oh < 1 || ow < 1) return;
  grad__integral_image(in, h, w, integral);
  const size_t stride = (size_t)w + 1;
  for (int oy = 0; oy < oh; oy++) {
    /* Rows [y0, y1) of the image fall inside this window; padding adds 0. */
    const int y0 = clamp_index(oy - pad, h), y1 = clamp_index(oy - pad + k, h);
    const double *top = integral + (size_t)y0 * stride;
    const double *bottom = integral + (size_t)y1 * stride;
    float *dst = out + (size_t)oy * ow;
    for (int ox = 0; ox < ow; ox++) {
      const int x0 = clamp_index(ox - pad, w), x1 = clamp_index(ox - pad + k, w);
      const double sum = bottom[x1] - bottom[x0] - top[x1] + top[x0];
      dst[ox] = (float)(sum * scale);
    }
  }
}

double grad__avg_pool_max(const float *in, int h, int w, int k, double *integral) {
  grad__integral_image(in, h, w, integral);
  const size_t stride = (size_t)w + 1;
  double best = 0.0;
  for (int y = 0; y + k <= h; y++) {
    const double *top = integral + (size_t)y * stride;
    const double *bottom = integral + (size_t)(y + k) * stride;
    for (int x = 0; x + k <= w; x++) {
      const double sum = bottom[x + k] - bottom[x] - top[x + k] + top[x];
      if ((y == 0 && x == 0) || sum > best) best = sum;
    }
  }
  return best / ((double)k * k);
}
