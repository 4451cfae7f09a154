/* The decoder's depthwise convolution (lib/kernels/depthwise.c) against its
 * definition, in double: forward, data gradient (set and added) and weight
 * gradient, on planes that take the flat path and on one too large for its
 * buffers (the row sweeps), for kernels 3 and 5. CRAD's fused depthwise
 * stage against the separate BatchNorm and depthwise passes it replaces,
 * bit for bit. */
#include <math.h>

#include "batchnorm.h"
#include "depthwise.h"
#include "testutil.h"

static unsigned rng_state = 987u;
static float uniform(void) { return (float)test_uniform(&rng_state); }

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

/* One BatchNorm's tensors (C channels), filled. */
typedef struct bn_set {
  float gamma[8], beta[8], rm[8], rv[8], mean[8], invstd[8], dgamma[8], dbeta[8];
} bn_set;

static void bn_fill(bn_set *b, int C) {
  for (int c = 0; c < C; c++) {
    b->gamma[c] = 1.0f + 0.5f * uniform(), b->beta[c] = uniform();
    b->rm[c] = 0.1f * uniform(), b->rv[c] = 1.0f + 0.1f * uniform();
    b->dgamma[c] = uniform(), b->dbeta[c] = uniform();
  }
}

static grad__dw_bn bn_view(bn_set *b) {
  grad__dw_bn v = {b->gamma, b->beta, b->rm, b->rv, b->mean, b->invstd, b->dgamma, b->dbeta};
  return v;
}

static void same(const char *what, const float *a, const float *b, size_t count) {
  for (size_t j = 0; j < count; j++)
    if (memcmp(&a[j], &b[j], sizeof(float)) != 0 && !(a[j] == 0.0f && b[j] == 0.0f))
      ck_abort_msg("%s[%zu]: fused %.9g, separate %.9g", what, j, a[j], b[j]);
}

/* The stage's results equal those of the separate passes (the sequence
 * store_crad.c ran before): the flat path's fusions change no bit (the last
 * case, too large for it, runs the separate passes themselves). */
START_TEST(stage_equals_separate_passes) {
  const int n = cases[_i].n, C = cases[_i].channels, h = cases[_i].h, w = cases[_i].w,
            k = cases[_i].kernel;
  const size_t count = (size_t)n * C * h * w, P = (size_t)h * w, kk = (size_t)k * k;
  float *conv1 = malloc(count * 4), *dL = malloc(count * 4), *wt = malloc(C * kk * 4);
  float *add = malloc((size_t)n * C * 4), *dw0 = malloc(C * kk * 4);
  fill(conv1, count), fill(dL, count), fill(wt, C * kk), fill(add, (size_t)n * C);
  fill(dw0, C * kk);
  bn_set b1[2], b2[2];
  bn_fill(&b1[0], C), bn_fill(&b2[0], C);
  b1[1] = b1[0], b2[1] = b2[0];
  float *conv2[2], *e2[2], *means[2], *d2[2], *d1[2], *dw[2];
  for (int v = 0; v < 2; v++) {
    conv2[v] = malloc(count * 4), e2[v] = malloc(count * 4), d2[v] = malloc(count * 4);
    d1[v] = malloc(count * 4), means[v] = malloc((size_t)n * C * 4), dw[v] = malloc(C * kk * 4);
    memcpy(d2[v], dL, count * 4);
    memcpy(dw[v], dw0, C * kk * 4);
  }
  float *scratch = malloc(count * 4);
  /* fused */
  grad__dw_stage st = {n, C, h, w, k, wt, dw[0], bn_view(&b1[0]), bn_view(&b2[0]), conv1,
                       conv2[0], e2[0], means[0], d2[0], d1[0], add, scratch};
  grad__dw_stage_forward(&st);
  grad__dw_stage_backward(&st);
  /* separate */
  const grad__bn_epilogue hswish = {GRAD__BN_HARD_SWISH, NULL, NULL},
                          mean_of = {GRAD__BN_LINEAR, NULL, means[1]};
  const grad__bn_prologue mean_grad = {add, NULL}, hswish_grad = {NULL, b1[1].beta};
  grad__bn_forward_train_fused(conv1, n, C, P, b1[1].gamma, b1[1].beta, b1[1].rm, b1[1].rv,
                               b1[1].mean, b1[1].invstd, &hswish, scratch);
  grad__depthwise_conv2d(scratch, wt, n, C, h, w, k, conv2[1]);
  grad__bn_forward_train_fused(conv2[1], n, C, P, b2[1].gamma, b2[1].beta, b2[1].rm, b2[1].rv,
                               b2[1].mean, b2[1].invstd, &mean_of, e2[1]);
  grad__bn_backward_fused(conv2[1], d2[1], &mean_grad, n, C, P, b2[1].gamma, b2[1].mean,
                          b2[1].invstd, d2[1], b2[1].dgamma, b2[1].dbeta);
  grad__bn_apply_fused(conv1, n, C, P, b1[1].gamma, b1[1].beta, b1[1].mean, b1[1].invstd,
                       &hswish, scratch);
  grad__depthwise_conv2d_backward(scratch, wt, d2[1], n, C, h, w, k, d1[1], true, dw[1]);
  grad__bn_backward_fused(conv1, d1[1], &hswish_grad, n, C, P, b1[1].gamma, b1[1].mean,
                          b1[1].invstd, d1[1], b1[1].dgamma, b1[1].dbeta);
  same("conv2", conv2[0], conv2[1], count);
  same("e2", e2[0], e2[1], count);
  same("plane means", means[0], means[1], (size_t)n * C);
  same("dL/dconv2", d2[0], d2[1], count);
  same("dL/dconv1", d1[0], d1[1], count);
  same("dweight", dw[0], dw[1], C * kk);
  /* every BatchNorm output: statistics, running statistics, gradients */
  same("bn1", (const float *)&b1[0], (const float *)&b1[1], sizeof(bn_set) / 4);
  same("bn2", (const float *)&b2[0], (const float *)&b2[1], sizeof(bn_set) / 4);
  for (int v = 0; v < 2; v++) free(conv2[v]), free(e2[v]), free(d2[v]), free(d1[v]),
                               free(means[v]), free(dw[v]);
  free(conv1), free(dL), free(wt), free(add), free(dw0), free(scratch);
}
END_TEST

int main(void) {
  Suite *s = suite_create("depthwise");
  TCase *tc = tcase_create("depthwise");
  tcase_add_loop_test(tc, depthwise_matches_definition, 0, sizeof cases / sizeof cases[0]);
  tcase_add_loop_test(tc, stage_equals_separate_passes, 0, sizeof cases / sizeof cases[0]);
  suite_add_tcase(s, tc);
  return test_run_suite(s);
}
