/* Shape rasterisers and value noise for the synthetic data set (synth.h). */
#include <math.h>
#include <string.h>

#include "synth_internal.h"

static inline int clampi(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }

static void segment(uint8_t *mask, int size, float ax, float ay, float bx, float by, float r) {
  const float dx = bx - ax, dy = by - ay, len2 = dx * dx + dy * dy;
  const int x0 = clampi((int)floorf(fminf(ax, bx) - r), 0, size - 1);
  const int x1 = clampi((int)ceilf(fmaxf(ax, bx) + r), 0, size - 1);
  const int y0 = clampi((int)floorf(fminf(ay, by) - r), 0, size - 1);
  const int y1 = clampi((int)ceilf(fmaxf(ay, by) + r), 0, size - 1);
  for (int y = y0; y <= y1; y++)
    for (int x = x0; x <= x1; x++) {
      /* Distance from the pixel centre to the closest point of the segment. */
      float t = len2 > 0 ? ((x - ax) * dx + (y - ay) * dy) / len2 : 0.0f;
      t = t < 0 ? 0 : (t > 1 ? 1 : t);
      const float ex = x - (ax + t * dx), ey = y - (ay + t * dy);
      if (ex * ex + ey * ey <= r * r) mask[(size_t)y * size + x] = 255;
    }
}

void grad__shape_polyline(uint8_t *mask, int size, const float *xy, int n, float radius) {
  if (n == 1) segment(mask, size, xy[0], xy[1], xy[0], xy[1], radius);
  for (int i = 0; i + 1 < n; i++)
    segment(mask, size, xy[2 * i], xy[2 * i + 1], xy[2 * i + 2], xy[2 * i + 3], radius);
}

void grad__shape_disc(uint8_t *mask, int size, float cx, float cy, float radius) {
  grad__shape_ellipse(mask, size, cx, cy, 1.0f, 0.0f, radius, radius);
}

void grad__shape_ellipse(uint8_t *mask, int size, float cx, float cy, float ux, float uy,
                         float a, float b) {
  const float reach = fmaxf(a, b);
  const int x0 = clampi((int)floorf(cx - reach), 0, size - 1);
  const int x1 = clampi((int)ceilf(cx + reach), 0, size - 1);
  const int y0 = clampi((int)floorf(cy - reach), 0, size - 1);
  const int y1 = clampi((int)ceilf(cy + reach), 0, size - 1);
  for (int y = y0; y <= y1; y++)
    for (int x = x0; x <= x1; x++) {
      const float along = (x - cx) * ux + (y - cy) * uy;
      const float across = -(x - cx) * uy + (y - cy) * ux;
      if ((along * along) / (a * a) + (across * across) / (b * b) <= 1.0f)
        mask[(size_t)y * size + x] = 255;
    }
}

void grad__random_direction(grad__rng *rng, float *ux, float *uy) {
  /* Rejection sampling in the unit disc gives a uniform angle. */
  for (;;) {
    const double x = 2.0 * grad__rng_uniform(rng) - 1.0, y = 2.0 * grad__rng_uniform(rng) - 1.0;
    const double r2 = x * x + y * y;
    if (r2 > 1e-4 && r2 <= 1.0) {
      const double r = sqrt(r2);
      *ux = (float)(x / r);
      *uy = (float)(y / r);
      return;
    }
  }
}

static inline float smoothstep(float t) { return t * t * (3.0f - 2.0f * t); }

grad_status grad__noise_fbm(grad__rng *rng, int size, float cell, int octaves, float *out) {
  memset(out, 0, (size_t)size * size * sizeof *out);
  float weight = 1.0f, total = 0.0f;
  for (int o = 0; o < octaves; o++, cell *= 0.5f, weight *= 0.5f) {
    if (cell < 1.0f) cell = 1.0f;
    const int cells = (int)((float)size / cell) + 3; /* covers ix + 1 at the far edge */
    float *lattice = grad__malloc_array((size_t)cells * cells, sizeof *lattice);
    if (!lattice) return grad__fail(GRAD_E_NOMEM, "synthetic data: out of memory for noise");
    for (size_t i = 0; i < (size_t)cells * cells; i++)
      lattice[i] = (float)grad__rng_uniform(rng);
    /* A random sub-cell offset so the lattice does not align with pixels. */
    const float ox = (float)grad__rng_uniform(rng), oy = (float)grad__rng_uniform(rng);
    for (int y = 0; y < size; y++) {
      const float fy = (float)y / cell + oy;
      const int iy = (int)fy;
      const float ty = smoothstep(fy - (float)iy);
      for (int x = 0; x < size; x++) {
        const float fx = (float)x / cell + ox;
        const int ix = (int)fx;
        const float tx = smoothstep(fx - (float)ix);
        const float *r0 = lattice + (size_t)iy * cells, *r1 = r0 + cells;
        const float top = r0[ix] + tx * (r0[ix + 1] - r0[ix]);
        const float bottom = r1[ix] + tx * (r1[ix + 1] - r1[ix]);
        out[(size_t)y * size + x] += weight * (top + ty * (bottom - top));
      }
    }
    total += weight;
    grad__free(lattice);
  }
  for (size_t i = 0; i < (size_t)size * size; i++) out[i] /= total;
  return GRAD_OK;
}
