/* The neck's alignment: bilinear resizing with align_corners=True. */
#include <string.h>

#include "backbone.h"

enum { TABLE_MAX = 1024 };

/* Source position of output pixel o: index, next index (clamped), weight. */
static void source(float scale, int o, int in, int *i0, int *i1, float *frac) {
  float f = scale * (float)o;
  int i = (int)f;
  if (i > in - 1) i = in - 1;
  *i0 = i;
  *i1 = i < in - 1 ? i + 1 : i;
  *frac = f - (float)i;
}

/*
 * As PyTorch's upsample_bilinear2d with align_corners=True: the corner
 * pixels of input and output coincide, so source = dest * (in - 1) /
 * (out - 1) (0 when out is 1), interpolating between floor(source) and the
 * next pixel (clamped at the border). Scales are computed in float, as
 * PyTorch does for float tensors. Each output row blends its two source
 * rows first, then samples the blend along x from precomputed tables.
 */
void grad__resize_align_corners(const float *in, int ih, int iw, float *out, int oh, int ow) {
  if (ih == oh && iw == ow) {
    memcpy(out, in, sizeof(float) * (size_t)ih * iw);
    return;
  }
  const float sy = oh > 1 ? (float)(ih - 1) / (float)(oh - 1) : 0.0f;
  const float sx = ow > 1 ? (float)(iw - 1) / (float)(ow - 1) : 0.0f;
  if (iw > TABLE_MAX || ow > TABLE_MAX) { /* beyond any backbone map: pixel by pixel */
    for (int oy = 0; oy < oh; oy++) {
      int y0, y1, x0, x1;
      float ly, lx;
      source(sy, oy, ih, &y0, &y1, &ly);
      for (int ox = 0; ox < ow; ox++) {
        source(sx, ox, iw, &x0, &x1, &lx);
        const float *r0 = in + (size_t)y0 * iw, *r1 = in + (size_t)y1 * iw;
        out[(size_t)oy * ow + ox] = (1.0f - ly) * ((1.0f - lx) * r0[x0] + lx * r0[x1]) +
                                    ly * ((1.0f - lx) * r1[x0] + lx * r1[x1]);
      }
    }
    return;
  }
  int x0[TABLE_MAX], x1[TABLE_MAX];
  float lx[TABLE_MAX], row[TABLE_MAX];
  for (int ox = 0; ox < ow; ox++) source(sx, ox, iw, &x0[ox], &x1[ox], &lx[ox]);
  for (int oy = 0; oy < oh; oy++) {
    int y0, y1;
    float ly;
    source(sy, oy, ih, &y0, &y1, &ly);
    const float *r0 = in + (size_t)y0 * iw, *r1 = in + (size_t)y1 * iw;
    const float hy = 1.0f - ly;
    for (int x = 0; x < iw; x++) row[x] = hy * r0[x] + ly * r1[x];
    float *o = out + (size_t)oy * ow;
    for (int ox = 0; ox < ow; ox++) o[ox] = row[x0[ox]] + lx[ox] * (row[x1[ox]] - row[x0[ox]]);
  }
}
