/* Bilinear grid sampling with zero padding, and its backward pass. */
#include <math.h>
#include <stdbool.h>

#include "grid_sample.h"

enum { NW = 0, NE = 1, SW = 2, SE = 3 };

/* The four taps of one point: plane offsets, whether each lies inside the
 * grid, their bilinear weights, and the fractional position in the cell. */
typedef struct taps {
  size_t offset[4];
  bool inside[4];
  float weight[4];
  float fx, fy;
  bool any;
} taps;

static taps locate(float x, float y, int gh, int gw) {
  taps t = {{0}, {false}, {0}, 0.0f, 0.0f, false};
  /* torch's unnormalisation for align_corners=False, in float as torch. */
  float ix = ((x + 1.0f) * (float)gw - 1.0f) / 2.0f;
  float iy = ((y + 1.0f) * (float)gh - 1.0f) / 2.0f;
  /* Outside [-1, size) no tap can be inside; this also keeps NaN and huge
   * coordinates away from the float-to-int conversion. */
  if (!(ix >= -1.0f && ix < (float)gw && iy >= -1.0f && iy < (float)gh)) return t;
  float x0f = floorf(ix), y0f = floorf(iy);
  int x0 = (int)x0f, y0 = (int)y0f;
  t.fx = ix - x0f;
  t.fy = iy - y0f;
  float wx0 = (x0f + 1.0f) - ix, wy0 = (y0f + 1.0f) - iy;
  const int tx[4] = {x0, x0 + 1, x0, x0 + 1}, ty[4] = {y0, y0, y0 + 1, y0 + 1};
  const float wx[4] = {wx0, t.fx, wx0, t.fx}, wy[4] = {wy0, wy0, t.fy, t.fy};
  for (int k = 0; k < 4; k++) {
    t.inside[k] = tx[k] >= 0 && tx[k] < gw && ty[k] >= 0 && ty[k] < gh;
    t.offset[k] = t.inside[k] ? (size_t)ty[k] * gw + tx[k] : 0;
    t.weight[k] = wx[k] * wy[k];
    t.any = t.any || t.inside[k];
  }
  return t;
}

void grad__grid_sample(const float *grid, int channels, int gh, int gw, const float *x,
                       const float *y, size_t points, float *out) {
  const size_t plane = (size_t)gh * gw;
  for (size_t k = 0; k < points; k++) {
    taps t = locate(x[k], y[k], gh, gw);
    if (!t.any) {
      for (int c = 0; c < channels; c++) out[(size_t)c * points + k] = 0.0f;
      continue;
    }
    for (int c = 0; c < channels; c++) {
      const float *g = grid + (size_t)c * plane;
      float v = 0.0f;
      for (int j = 0; j < 4; j++)
        if (t.inside[j]) v += g[t.offset[j]] * t.weight[j];
      out[(size_t)c * points + k] = v;
    }
  }
}

void grad__grid_sample_backward(const float *grid, int channels, int gh, int gw, const float *x,
                                const float *y, size_t points, const float *dout, float *dgrid,
                                float *dx, float *dy) {
  const size_t plane = (size_t)gh * gw;
  const bool coords = dx != NULL || dy != NULL;
  for (size_t k = 0; k < points; k++) {
    taps t = locate(x[k], y[k], gh, gw);
    double gx = 0.0, gy = 0.0;
    if (t.any) {
      for (int c = 0; c < channels; c++) {
        float d = dout[(size_t)c * points + k];
        if (dgrid) {
          float *dg = dgrid + (size_t)c * plane;
          for (int j = 0; j < 4; j++)
            if (t.inside[j]) dg[t.offset[j]] += t.weight[j] * d;
        }
        if (coords) {
          const float *g = grid + (size_t)c * plane;
          float v[4];
          for (int j = 0; j < 4; j++) v[j] = t.inside[j] ? g[t.offset[j]] : 0.0f;
          /* Derivatives of the bilinear interpolant along the cell axes. */
          gx += (double)d * ((1.0f - t.fy) * (v[NE] - v[NW]) + t.fy * (v[SE] - v[SW]));
          gy += (double)d * ((1.0f - t.fx) * (v[SW] - v[NW]) + t.fx * (v[SE] - v[NE]));
        }
      }
    }
    /* d(cell position)/d(normalised coordinate) = size / 2. */
    if (dx) dx[k] = (float)(gx * gw * 0.5);
    if (dy) dy[k] = (float)(gy * gh * 0.5);
  }
}
