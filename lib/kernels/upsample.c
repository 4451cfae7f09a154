/* Bilinear align_corners=True resizing of float planes (upsample.h). */
#include <stddef.h>

#include "upsample.h"

/* The source coordinate of output index i, split into a cell and a weight. */
static inline void source_of(int i, double ratio, int in, int *i0, int *i1, double *frac) {
  const double src = i * ratio;
  int lo = (int)src;
  if (lo > in - 1) lo = in - 1;
  *i0 = lo;
  *i1 = lo < in - 1 ? lo + 1 : lo;
  *frac = src - lo;
}

enum { COLUMNS = 512 }; /* output columns whose source cells are found at once */

void grad__resize_bilinear_ac(const float *in, int planes, int in_h, int in_w, float *out,
                              int out_h, int out_w) {
  /* The ratio is computed once in double; (out - 1) == 0 reads index 0. */
  const double ry = out_h > 1 ? (double)(in_h - 1) / (out_h - 1) : 0.0;
  const double rx = out_w > 1 ? (double)(in_w - 1) / (out_w - 1) : 0.0;
  int x0[COLUMNS], x1[COLUMNS];
  double fx[COLUMNS];
  /* Columns in chunks, their cells found once for every row and plane. */
  for (int first = 0; first < out_w; first += COLUMNS) {
    const int n = out_w - first < COLUMNS ? out_w - first : COLUMNS;
    for (int i = 0; i < n; i++) source_of(first + i, rx, in_w, &x0[i], &x1[i], &fx[i]);
    for (int p = 0; p < planes; p++) {
      const float *plane = in + (size_t)p * in_h * in_w;
      float *dst = out + (size_t)p * out_h * out_w + first;
      for (int y = 0; y < out_h; y++) {
        int y0, y1;
        double fy;
        source_of(y, ry, in_h, &y0, &y1, &fy);
        const float *r0 = plane + (size_t)y0 * in_w, *r1 = plane + (size_t)y1 * in_w;
        float *row = dst + (size_t)y * out_w;
        for (int i = 0; i < n; i++) {
          const double top = r0[x0[i]] + fx[i] * ((double)r0[x1[i]] - r0[x0[i]]);
          const double bottom = r1[x0[i]] + fx[i] * ((double)r1[x1[i]] - r1[x0[i]]);
          row[i] = (float)(top + fy * (bottom - top));
        }
      }
    }
  }
}
