/* The im2col + sgemm convolution against a plain direct reference. */
#include "conv.h"
#include "testutil.h"

static unsigned rng_state = 12345u;
static float uniform(void) { /* deterministic, in [-1, 1) */
  rng_state = rng_state * 1664525u + 1013904223u;
  return (float)((rng_state >> 8) / 8388608.0 - 1.0);
}

static void fill(float *v, size_t n) {
  for (size_t i = 0; i < n; i++) v[i] = uniform();
}

/* The definition of convolution, in double, one output at a time. */
static void reference_conv(const grad__conv *c, const float *wt, const float *bias, int relu,
                           const float *x, int n, int h, int w, float *y) {
  int oh = grad__conv_out_size(c, h), ow = grad__conv_out_size(c, w), k = c->kernel;
  for (int i = 0; i < n; i++)
    for (int co = 0; co < c->out_channels; co++)
      for (int oy = 0; oy < oh; oy++)
        for (int ox = 0; ox < ow; ox++) {
          double acc = bias ? bias[co] : 0.0;
          for (int ci = 0; ci < c->in_channels; ci++)
            for (int ky = 0; ky < k; ky++)
              for (int kx = 0; kx < k; kx++) {
                int iy = oy * c->stride - c->pad + ky, ix = ox * c->stride - c->pad + kx;
                if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                acc += (double)wt[((co * c->in_channels + ci) * k + ky) * k + kx] *
                       x[((size_t)(i * c->in_channels + ci) * h + iy) * w + ix];
              }
          if (relu && acc < 0) acc = 0;
          y[((size_t)(i * c->out_channels + co) * oh + oy) * ow + ox] = (float)acc;
        }
}

static const struct {
  grad__conv conv;
  int n, h, w, bias, relu;
} cases[] = {
  {{3, 5, 7, 2, 3}, 2, 17, 13, 1, 1},   /* the stem's 7x7/2 shape, odd sizes */
  {{13, 11, 3, 1, 1}, 1, 9, 10, 0, 0},  /* 3x3 same padding, odd channel counts */
  {{6, 9, 3, 2, 1}, 3, 8, 11, 1, 0},    /* 3x3 stride 2 */
  {{10, 7, 1, 1, 0}, 2, 5, 6, 1, 1},    /* 1x1 stride 1: no im2col */
  {{10, 7, 1, 2, 0}, 1, 9, 9, 0, 0},    /* 1x1 stride 2 (downsample) */
  {{4, 3, 3, 1, 0}, 1, 3, 3, 1, 0},     /* output 1x1 */
};

START_TEST(fast_conv_matches_reference) {
  const grad__conv *c = &cases[_i].conv;
  int n = cases[_i].n, h = cases[_i].h, w = cases[_i].w;
  int oh = grad__conv_out_size(c, h), ow = grad__conv_out_size(c, w);
  size_t nx = (size_t)n * c->in_channels * h * w, ny = (size_t)n * c->out_channels * oh * ow;
  size_t nw = (size_t)c->out_channels * c->in_channels * c->kernel * c->kernel;
  float *x = malloc(nx * 4), *wt = malloc(nw * 4), *b = malloc(c->out_channels * 4);
  float *y = malloc(ny * 4), *ref = malloc(ny * 4);
  fill(x, nx);
  fill(wt, nw);
  fill(b, c->out_channels);
  const float *bias = cases[_i].bias ? b : NULL;
  grad_workspace *ws = NULL;
  ck_assert_int_eq(grad_workspace_create(&ws), GRAD_OK);
  for (int repeat = 0; repeat < 2; repeat++) { /* the reused workspace gives the same */
    ck_assert_int_eq(grad__conv2d(c, wt, bias, cases[_i].relu, x, n, h, w, y, ws), GRAD_OK);
    reference_conv(c, wt, bias, cases[_i].relu, x, n, h, w, ref);
    ck_assert_close_rel(y, ref, ny, 1e-5);
  }
  grad_workspace_free(ws);
  free(x), free(wt), free(b), free(y), free(ref);
}
END_TEST

/* col2im is the adjoint of im2col: <im2col(x), c> == <x, col2im(c)>. */
START_TEST(col2im_is_adjoint_of_im2col) {
  const grad__conv c = {5, 1, 3, 2, 1};
  int h = 9, w = 7, oh = grad__conv_out_size(&c, h), ow = grad__conv_out_size(&c, w);
  size_t nx = 5 * h * w, ncol = (size_t)5 * 9 * oh * ow;
  float *x = malloc(nx * 4), *col = malloc(ncol * 4), *ux = malloc(ncol * 4),
        *back = calloc(nx, 4);
  fill(x, nx);
  fill(col, ncol);
  grad__im2col(&c, x, h, w, ux);
  grad__col2im(&c, col, h, w, back);
  double lhs = 0, rhs = 0;
  for (size_t i = 0; i < ncol; i++) lhs += (double)ux[i] * col[i];
  for (size_t i = 0; i < nx; i++) rhs += (double)x[i] * back[i];
  ck_assert_double_eq_tol(lhs, rhs, 1e-4 * fabs(lhs) + 1e-6);
  free(x), free(col), free(ux), free(back);
}
END_TEST

START_TEST(kernel_larger_than_input_is_an_error) {
  const grad__conv c = {1, 1, 7, 1, 0};
  float x[4] = {0}, y[4];
  grad_workspace *ws = NULL;
  ck_assert_int_eq(grad_workspace_create(&ws), GRAD_OK);
  ck_assert_int_eq(grad__conv2d(&c, x, NULL, 0, x, 1, 2, 2, y, ws), GRAD_E_SHAPE);
  ck_assert_ptr_nonnull(strstr(grad_last_error(), "7x7"));
  grad_workspace_free(ws);
}
END_TEST

int main(void) {
  Suite *s = suite_create("conv");
  TCase *tc = tcase_create("conv");
  tcase_add_loop_test(tc, fast_conv_matches_reference, 0, sizeof cases / sizeof cases[0]);
  tcase_add_test(tc, col2im_is_adjoint_of_im2col);
  tcase_add_test(tc, kernel_larger_than_input_is_an_error);
  suite_add_tcase(s, tc);
  return test_run_suite(s);
}
