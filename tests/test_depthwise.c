/* The decoder's depthwise convolution (lib/kernels/depthwise.c) against its
 * definition, in double: forward, data gradient (set and added) and weight
 * gradient, on planes that take the flat path and on one too large for its
 * buffers (the row sweeps), for kernels 3 and 5. */
#include <math.h>

#include "depthwise.h"
#include "testutil.h"

static unsigned rng_state = 987u;
static float uniform(void) { /* deterministic, in [-1, 1) */
  rng_state = rng_state * 1664525u + 1013904223u;
  return (float)((rng_state >> 8) / 8388608.0 - 1.0);
}

static void fill(float *v, size_t n) {
  for (size_t i = 0; i < n; i++) v[i] = uniform();
}

/* x's value at (i, c, y, x), 0 outside the plane. */
static double at(const float *v, int channels, int h, int w, int i, int c, int y, int x) {
  if (y < 0 || y >= h || x < 0 || x >= w) return 0.0;
  return v[(((size_t)i * channels + c) * h + y) * w + x];
}

static const struct {
  int n, channels, h, w, kernel;
} cases[] = {
  {2, 3, 28, 28, 3}, /* CRAD's maps */
  {3, 2, 5, 7, 3},   /* odd sizes */
  {1, 2, 6, 9, 5},   /* kernel 5 */
  {1, 2, 70, 66, 3}, /* too large for the flat buffers: the row sweeps */
};

/* |got - want| within 1e-5 of the magnitudes summed (float sums of <= 25 taps
 * or of one plane of products). */
static void check(const char *what, float got, double want, double scale) {
  if (fabs(got - want) > 1e-5 * (scale + 1.0))
    ck_abort_msg("%s: %.9g, definition %.9g", what, got, want);
}

START_TEST(depthwise_matches_definition) {
  const int n = cases[_i].n, C = cases[_i].channels, h = cases[_i].h, w = cases[_i].w,
            k = cases[_i].kernel, r = k / 2;
  const size_t count = (size_t)n * C * h * w, kk = (size_t)k * k;
  float *x = malloc(count * 4), *dy = malloc(count * 4), *y = malloc(count * 4),
        *dx = malloc(count * 4), *dx_add = malloc(count * 4), *wt = malloc(C * kk * 4),
        *dw = calloc(C * kk, 4);
  fill(x, count);
  fill(dy, count);
  fill(wt, C * kk);
  fill(dx_add, count);
  float *dx_before = malloc(count * 4);
  memcpy(dx_before, dx_add, count * 4);
  for (size_t j = 0; j < count; j++) dx[j] = NAN; /* dx_set must not read it */
  grad__depthwise_conv2d(x, wt, n, C, h, w, k, y);
  grad__depthwise_conv2d_backward(x, wt, dy, n, C, h, w, k, dx, true, dw);
  grad__depthwise_conv2d_backward(x, wt, dy, n, C, h, w, k, dx_add, false, NULL);
  for (int i = 0; i < n; i++)
    for (int c = 0; c < C; c++)
      for (int oy = 0; oy < h; oy++)
        for (int ox = 0; ox < w; ox++) {
          double fwd = 0.0, fscale = 0.0, back = 0.0, bscale = 0.0;
          for (int ky = 0; ky < k; ky++)
            for (int kx = 0; kx < k; kx++) {
              const double wv = wt[c * kk + ky * k + kx];
              const double f = wv * at(x, C, h, w, i, c, oy + ky - r, ox + kx - r);
              const double b = wv * at(dy, C, h, w, i, c, oy - ky + r, ox - kx + r);
              fwd += f, fscale += fabs(f), back += b, bscale += fabs(b);
            }
          const size_t j = (((size_t)i * C + c) * h + oy) * w + ox;
          check("forward", y[j], fwd, fscale);
          check("dx", dx[j], back, bscale);
          check("dx added", dx_add[j], dx_before[j] + back, bscale + fabs(dx_before[j]));
        }
  for (int c = 0; c < C; c++)
    for (int ky = 0; ky < k; ky++)
      for (int kx = 0; kx < k; kx++) {
        double sum = 0.0, scale = 0.0;
        for (int i = 0; i < n; i++)
          for (int oy = 0; oy < h; oy++)
            for (int ox = 0; ox < w; ox++) {
              const double p = at(dy, C, h, w, i, c, oy, ox) *
                               at(x, C, h, w, i, c, oy + ky - r, ox + kx - r);
              sum += p, scale += fabs(p);
            }
        check("dweight", dw[c * kk + ky * k + kx], sum, scale);
      }
  free(x), free(dy), free(y), free(dx), free(dx_add), free(dx_before), free(wt), free(dw);
}
END_TEST

int main(void) {
  Suite *s = suite_create("depthwise");
  TCase *tc = tcase_create("depthwise");
  tcase_add_loop_test(tc, depthwise_matches_definition, 0, sizeof cases / sizeof cases[0]);
  suite_add_tcase(s, tc);
  return test_run_suite(s);
}
