/* Bilinear grid sampling: hand-computed values, the adjoint identity for the
 * grid gradient, finite differences for the coordinate gradient. */
#include <stdbool.h>

#include "grid_sample.h"
#include "rng.h"
#include "testutil.h"

/* Channel 0 is [[1, 2, 3], [4, 5, 6]] (2 rows, 3 columns), channel 1 is ten
 * times channel 0. */
static const float small_grid[12] = {1, 2, 3, 4, 5, 6, 10, 20, 30, 40, 50, 60};

START_TEST(values_by_hand) {
  const struct {
    float x, y, expect;
  } cases[] = {
    {-2.0f / 3.0f, -0.5f, 1.0f}, /* the centre of cell (0, 0) */
    {0.0f, -0.5f, 2.0f},         /* x runs along the width: cell (row 0, col 1) */
    {0.0f, 0.0f, 3.5f},          /* halfway between rows 0 and 1 in column 1 */
    {-1.0f, -1.0f, 0.25f},       /* the outer corner: three taps read zero padding */
    {1.0f, 1.0f, 1.5f},          /* the opposite corner: 6 / 4 */
    {1.5f, 0.0f, 0.0f},          /* entirely outside */
    {-1.0f, 0.5f, 2.0f},         /* left edge, row 1 centre: half of 4 */
    {1.0f / 3.0f, -0.25f, 2.0f + 0.5f * 1.0f + 0.25f * 3.0f},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    float out[2];
    grad__grid_sample(small_grid, 2, 2, 3, &cases[i].x, &cases[i].y, 1, out);
    ck_assert_msg(fabsf(out[0] - cases[i].expect) < 1e-6f, "case %zu: %g != %g", i,
                  (double)out[0], (double)cases[i].expect);
    ck_assert_msg(fabsf(out[1] - 10.0f * cases[i].expect) < 1e-5f, "case %zu channel 1", i);
  }
  float nan = NAN, zero = 0.0f, out[2] = {1, 1};
  grad__grid_sample(small_grid, 2, 2, 3, &nan, &zero, 1, out);
  ck_assert(out[0] == 0.0f && out[1] == 0.0f);
}
END_TEST

START_TEST(coordinate_gradient_by_hand) {
  /* At the centre of cell (row 0, col 1): d/dx = (3 - 2) * 3 / 2,
   * d/dy = (5 - 2) * 2 / 2, for channel 0 only (dout = 1, 0). */
  float x = 0.0f, y = -0.5f, dout[2] = {1.0f, 0.0f}, dx, dy;
  grad__grid_sample_backward(small_grid, 2, 2, 3, &x, &y, 1, dout, NULL, &dx, &dy);
  ck_assert_float_eq_tol(dx, 1.5f, 1e-6f);
  ck_assert_float_eq_tol(dy, 3.0f, 1e-6f);
  /* Past the left edge (x = -1.2, cell position -0.8) only the column-0
   * taps are inside: d/dix = 1 - ... = v(0) - 0. */
  x = -1.2f;
  y = -0.5f;
  float dgrid[12] = {0};
  grad__grid_sample_backward(small_grid, 2, 2, 3, &x, &y, 1, dout, dgrid, &dx, &dy);
  ck_assert_float_eq_tol(dx, 1.0f * 1.5f, 1e-5f);
  ck_assert_float_eq_tol(dgrid[0], 0.2f, 1e-6f); /* weight of tap (0, 0) */
  for (int i = 1; i < 12; i++) ck_assert_float_eq(dgrid[i], 0.0f);
}
END_TEST

enum { CH = 3, GH = 4, GW = 5, POINTS = 200 };

static double frac_margin(double pos) {
  double f = pos - floor(pos);
  return f < 1.0 - f ? f : 1.0 - f;
}

static double weighted_sum(const float *grid, const float *x, const float *y, size_t points,
                           const double *w) {
  float out[CH * POINTS];
  grad__grid_sample(grid, CH, GH, GW, x, y, points, out);
  double s = 0.0;
  for (size_t i = 0; i < CH * points; i++) s += w[i] * out[i];
  return s;
}

/* Points spread over [-1.3, 1.3]^2: inside, across the borders (some taps in
 * the zero padding) and entirely outside. */
static void random_points(grad__rng *rng, float *x, float *y, size_t points) {
  for (size_t k = 0; k < points; k++) {
    x[k] = (float)(2.6 * grad__rng_uniform(rng) - 1.3);
    y[k] = (float)(2.6 * grad__rng_uniform(rng) - 1.3);
  }
}

START_TEST(grid_gradient_is_the_adjoint) {
  grad__rng rng;
  grad__rng_seed(&rng, 7);
  float grid[CH * GH * GW], x[POINTS], y[POINTS], dout[CH * POINTS], out[CH * POINTS];
  float dgrid[CH * GH * GW];
  grad__rng_fill_normal(&rng, grid, CH * GH * GW, 0.0, 1.0);
  grad__rng_fill_normal(&rng, dout, CH * POINTS, 0.0, 1.0);
  random_points(&rng, x, y, POINTS);
  for (int i = 0; i < CH * GH * GW; i++) dgrid[i] = 1.0f; /* accumulates onto this */
  grad__grid_sample(grid, CH, GH, GW, x, y, POINTS, out);
  grad__grid_sample_backward(grid, CH, GH, GW, x, y, POINTS, dout, dgrid, NULL, NULL);
  double lhs = 0.0, rhs = 0.0;
  for (int i = 0; i < CH * POINTS; i++) lhs += (double)out[i] * dout[i];
  for (int i = 0; i < CH * GH * GW; i++) rhs += (double)grid[i] * (dgrid[i] - 1.0);
  ck_assert_msg(fabs(lhs - rhs) < 1e-5 * fabs(lhs), "<S g, d> %.9g != <g, S^T d> %.9g", lhs,
                rhs);
}
END_TEST

START_TEST(coordinate_gradient_matches_finite_differences) {
  grad__rng rng;
  grad__rng_seed(&rng, 11);
  float grid[CH * GH * GW], x[POINTS], y[POINTS], dx[POINTS], dy[POINTS];
  double w[CH * POINTS];
  float dout[CH * POINTS];
  grad__rng_fill_normal(&rng, grid, CH * GH * GW, 0.0, 1.0);
  for (int i = 0; i < CH * POINTS; i++) dout[i] = (float)(w[i] = grad__rng_normal(&rng));
  random_points(&rng, x, y, POINTS);
  grad__grid_sample_backward(grid, CH, GH, GW, x, y, POINTS, dout, NULL, dx, dy);
  const double h = 1e-2; /* moves a point by 0.025 cells at most */
  int checked = 0, outside = 0, partial = 0;
  for (int k = 0; k < POINTS; k++) {
    double ix = ((x[k] + 1.0) * GW - 1.0) / 2.0, iy = ((y[k] + 1.0) * GH - 1.0) / 2.0;
    /* The interpolant is smooth inside a cell: skip points near a border. */
    if (frac_margin(ix) < 0.05 || frac_margin(iy) < 0.05) continue;
    checked++;
    bool out_x = ix < -1 || ix > GW, out_y = iy < -1 || iy > GH;
    if (out_x || out_y) outside++;
    else if (ix < 0 || ix > GW - 1 || iy < 0 || iy > GH - 1) partial++;
    for (int axis = 0; axis < 2; axis++) {
      float *c = axis ? &y[k] : &x[k];
      float keep = *c, plus = (float)(keep + h), minus = (float)(keep - h);
      *c = plus;
      double lp = weighted_sum(grid, x, y, POINTS, w);
      *c = minus;
      double lm = weighted_sum(grid, x, y, POINTS, w);
      *c = keep;
      double fd = (lp - lm) / ((double)plus - (double)minus);
      double an = axis ? dy[k] : dx[k];
      ck_assert_msg(fabs(fd - an) <= 1e-4 * (1.0 + fabs(fd)),
                    "point %d (%g, %g) axis %d: analytic %.7g, finite differences %.7g", k,
                    (double)x[k], (double)y[k], axis, an, fd);
    }
  }
  /* The random points really covered the border cases. */
  ck_assert_int_gt(checked, POINTS / 2);
  ck_assert_int_gt(outside, 5);
  ck_assert_int_gt(partial, 5);
}
END_TEST

static Suite *grid_sample_suite(void) {
  Suite *s = suite_create("grid_sample");
  TCase *tc = tcase_create("grid_sample");
  tcase_add_test(tc, values_by_hand);
  tcase_add_test(tc, coordinate_gradient_by_hand);
  tcase_add_test(tc, grid_gradient_is_the_adjoint);
  tcase_add_test(tc, coordinate_gradient_matches_finite_differences);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return test_run_suite(grid_sample_suite()); }
