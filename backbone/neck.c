/* The neck's alignment: bilinear resizing with align_corners=True. */
#include <string.h>

#include "backbone.h"

/*
 * As PyTorch's upsample_bilinear2d with align_corners=True: the corner
 * pixels of input and output coincide, so source = dest * (in - 1) /
 * (out - 1) (0 when out is 1), interpolating between floor(source) and the
 * next pixel (clamped at the border). Scales are computed in float, as
 * PyTorch does for float tensors.
 */
void grad__resize_align_corners(const float *in, int ih, int iw, float *out, int oh, int ow) {
  if (ih == oh && iw == ow) {
    memcpy(out, in, sizeof(float) * (size_t)ih * iw);
    return;
  }
  const float sy = oh > 1 ? (float)(ih - 1) / (float)(oh - 1) : 0.0f;
  const float sx = ow > 1 ? (float)(iw - 1) / (float)(ow - 1) : 0.0f;
  for (int oy = 0; oy < oh; oy++) {
    float fy = sy * (float)oy;
    int y0 = (int)fy;
    if (y0 > ih - 1) y0 = ih - 1;
    int y1 = y0 < ih - 1 ? y0 + 1 : y0;
    float ly = fy - (float)y0, hy = 1.0f - ly;
    const float *r0 = in + (size_t)y0 * iw, *r1 = in + (size_t)y1 * iw;
    float *o = out + (size_t)oy * ow;
    for (int ox = 0; ox < ow; ox++) {
      float fx = sx * (float)ox;
      int x0 = (int)fx;
      if (x0 > iw - 1) x0 = iw - 1;
      int x1 = x0 < iw - 1 ? x0 + 1 : x0;
      float lx = fx - (float)x0, hx = 1.0f - lx;
      o[ox] = hy * (hx * r0[x0] + lx * r0[x1]) + ly * (hx * r1[x0] + lx * r1[x1]);
    }
  }
}
