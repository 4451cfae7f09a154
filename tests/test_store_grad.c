/*
 * Backward passes against central finite differences: convolution,
 * BatchNorm in training mode, the fusion loss with its cosine term, and the
 * whole store (grids, coordinate nets, grid sampling, decoder: BasicBlock
 * and CRAD's bottleneck) on a tiny configuration. Losses are summed in double and every difference quotient
 * divides by the step actually taken in float, so the only noise left is the
 * float32 forward pass itself.
 */
#include "batchnorm.h"
#include "conv_backward.h"
#include "depthwise_fused.h" /* grad__depthwise_force_isa: the kernels' ISA */
#include "fusion.h"
#include "rng.h"
#include "store_internal.h"
#include "testutil.h"

/* ||a - b|| / ||b|| over n values (b the finite differences). */
static double rel_error(const float *analytic, const double *fd, size_t n) {
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < n; i++) {
    double d = analytic[i] - fd[i];
    num += d * d;
    den += fd[i] * fd[i];
  }
  return den > 0.0 ? sqrt(num / den) : sqrt(num);
}

typedef double (*loss_fn)(void *ctx);

/* Central differences of loss(ctx) for every element of v. */
static void finite_differences(float *v, size_t n, double h, loss_fn loss, void *ctx,
                               double *fd) {
  for (size_t j = 0; j < n; j++) {
    float keep = v[j], plus = (float)(keep + h), minus = (float)(keep - h);
    v[j] = plus;
    double lp = loss(ctx);
    v[j] = minus;
    double lm = loss(ctx);
    v[j] = keep;
    fd[j] = (lp - lm) / ((double)plus - (double)minus);
  }
}

static double dot(const float *a, const float *w, size_t n) {
  double s = 0.0;
  for (size_t i = 0; i < n; i++) s += (double)a[i] * w[i];
  return s;
}

/* ---- convolution ---------------------------------------------------------- */

typedef struct conv_case {
  grad__conv conv;
  int n, h, w, bias;
  float *x, *weight, *b, *y, *probe;
  size_t ny;
  grad_workspace *ws;
} conv_case;

static double conv_loss(void *ctx) {
  conv_case *c = ctx;
  ck_assert_int_eq(grad__conv2d(&c->conv, c->weight, c->bias ? c->b : NULL, false, c->x, c->n,
                                c->h, c->w, c->y, c->ws),
                   GRAD_OK);
  return dot(c->y, c->probe, c->ny);
}

static const struct {
  grad__conv conv;
  int n, h, w, bias;
} conv_cases[] = {
  {{4, 5, 3, 1, 1}, 2, 5, 6, 0}, /* the decoder's 3x3 same convolution */
  {{4, 3, 1, 1, 0}, 2, 4, 5, 1}, /* the coordinate net's 1x1 with bias */
  {{3, 2, 3, 2, 1}, 1, 7, 6, 1}, /* strided, for generality */
};

START_TEST(conv_backward_matches_finite_differences) {
  conv_case c = {0};
  c.conv = conv_cases[_i].conv;
  c.n = conv_cases[_i].n, c.h = conv_cases[_i].h, c.w = conv_cases[_i].w;
  c.bias = conv_cases[_i].bias;
  int oh = grad__conv_out_size(&c.conv, c.h), ow = grad__conv_out_size(&c.conv, c.w);
  size_t nx = (size_t)c.n * c.conv.in_channels * c.h * c.w;
  size_t nw = (size_t)c.conv.out_channels * c.conv.in_channels * c.conv.kernel * c.conv.kernel;
  c.ny = (size_t)c.n * c.conv.out_channels * oh * ow;
  grad__rng rng;
  grad__rng_seed(&rng, 100 + _i);
  c.x = malloc(nx * 4), c.weight = malloc(nw * 4), c.b = malloc(c.conv.out_channels * 4);
  c.y = malloc(c.ny * 4), c.probe = malloc(c.ny * 4);
  grad__rng_fill_normal(&rng, c.x, nx, 0, 1);
  grad__rng_fill_normal(&rng, c.weight, nw, 0, 0.5);
  grad__rng_fill_normal(&rng, c.b, c.conv.out_channels, 0, 0.5);
  grad__rng_fill_normal(&rng, c.probe, c.ny, 0, 1);
  ck_assert_int_eq(grad_workspace_create(&c.ws), GRAD_OK);

  float *dx = calloc(nx, 4), *dw = calloc(nw, 4), *db = calloc(c.conv.out_channels, 4);
  /* Twice: the outputs accumulate, so the second call doubles them. */
  for (int r = 0; r < 2; r++)
    ck_assert_int_eq(grad__conv2d_backward(&c.conv, c.weight, c.x, c.n, c.h, c.w, c.probe, dx,
                                           dw, c.bias ? db : NULL, c.ws),
                     GRAD_OK);
  for (size_t i = 0; i < nx; i++) dx[i] *= 0.5f;
  for (size_t i = 0; i < nw; i++) dw[i] *= 0.5f;
  for (int i = 0; i < c.conv.out_channels; i++) db[i] *= 0.5f;

  double *fd = malloc(sizeof(double) * (nx + nw));
  finite_differences(c.x, nx, 1e-2, conv_loss, &c, fd);
  double ex = rel_error(dx, fd, nx);
  finite_differences(c.weight, nw, 1e-2, conv_loss, &c, fd);
  double ew = rel_error(dw, fd, nw);
  double eb = 0.0;
  if (c.bias) {
    finite_differences(c.b, c.conv.out_channels, 1e-2, conv_loss, &c, fd);
    eb = rel_error(db, fd, c.conv.out_channels);
  }
  fprintf(stderr, "conv case %d: relative errors dx %.2e dW %.2e db %.2e\n", _i, ex, ew, eb);
  ck_assert(ex < 1e-4 && ew < 1e-4 && eb < 1e-4);
  grad_workspace_free(c.ws);
  free(c.x), free(c.weight), free(c.b), free(c.y), free(c.probe), free(dx), free(dw), free(db);
  free(fd);
}
END_TEST

/* ---- BatchNorm -------------------------------------------------------------- */

enum { BN_N = 2, BN_C = 3, BN_P = 7, BN_SIZE = BN_N * BN_C * BN_P };

typedef struct bn_case {
  float x[BN_SIZE], y[BN_SIZE], probe[BN_SIZE];
  float gamma[BN_C], beta[BN_C];
} bn_case;

static double bn_loss(void *ctx) {
  bn_case *c = ctx;
  float rm[BN_C] = {0}, rv[BN_C] = {1, 1, 1}, mean[BN_C], invstd[BN_C];
  grad__bn_forward_train(c->x, BN_N, BN_C, BN_P, c->gamma, c->beta, rm, rv, mean, invstd, false,
                         c->y);
  return dot(c->y, c->probe, BN_SIZE);
}

START_TEST(batchnorm_backward_matches_finite_differences) {
  bn_case c;
  grad__rng rng;
  grad__rng_seed(&rng, 5);
  grad__rng_fill_normal(&rng, c.x, BN_SIZE, 0.3, 2.0);
  grad__rng_fill_normal(&rng, c.probe, BN_SIZE, 0, 1);
  grad__rng_fill_normal(&rng, c.gamma, BN_C, 1, 0.3);
  grad__rng_fill_normal(&rng, c.beta, BN_C, 0, 0.3);
  float rm[BN_C] = {0}, rv[BN_C] = {1, 1, 1}, mean[BN_C], invstd[BN_C];
  float dx[BN_SIZE], dgamma[BN_C] = {0}, dbeta[BN_C] = {0};
  grad__bn_forward_train(c.x, BN_N, BN_C, BN_P, c.gamma, c.beta, rm, rv, mean, invstd, false,
                         c.y);
  grad__bn_backward(c.x, c.probe, NULL, BN_N, BN_C, BN_P, c.gamma, mean, invstd, dx, NULL, dgamma,
                    dbeta);
  double fd[BN_SIZE];
  finite_differences(c.x, BN_SIZE, 1e-3, bn_loss, &c, fd);
  double ex = rel_error(dx, fd, BN_SIZE);
  finite_differences(c.gamma, BN_C, 1e-3, bn_loss, &c, fd);
  double eg = rel_error(dgamma, fd, BN_C);
  finite_differences(c.beta, BN_C, 1e-3, bn_loss, &c, fd);
  double eb = rel_error(dbeta, fd, BN_C);
  fprintf(stderr, "batchnorm: relative errors dx %.2e dgamma %.2e dbeta %.2e\n", ex, eg, eb);
  ck_assert(ex < 1e-3 && eg < 1e-4 && eb < 1e-4);
}
END_TEST

/* The vector builds (whole blocks of 16 values and a tail: 37 per plane)
 * against a plain double reference, the ReLU mask fused into the backward
 * against masking first, and every build the CPU has giving the same bits. */
enum { BV_N = 3, BV_C = 5, BV_P = 37, BV_SIZE = BV_N * BV_C * BV_P };

typedef struct bn_outputs {
  float y[BV_SIZE], dx[BV_SIZE], masked[BV_SIZE], mean[BV_C], invstd[BV_C], rm[BV_C], rv[BV_C];
  float dgamma[BV_C], dbeta[BV_C];
} bn_outputs;

static void bn_vector_run(const float *x, const float *dy, const float *mask, const float *gamma,
                          const float *beta, bn_outputs *o) {
  memset(o, 0, sizeof *o);
  for (int c = 0; c < BV_C; c++) o->rv[c] = 1.0f;
  grad__bn_forward_train(x, BV_N, BV_C, BV_P, gamma, beta, o->rm, o->rv, o->mean, o->invstd, true,
                         o->y);
  grad__bn_backward(x, dy, mask, BV_N, BV_C, BV_P, gamma, o->mean, o->invstd, o->dx, o->masked,
                    o->dgamma, o->dbeta);
}

START_TEST(batchnorm_vector_builds_and_fused_mask) {
  static float x[BV_SIZE], dy[BV_SIZE], mask[BV_SIZE], pre[BV_SIZE];
  float gamma[BV_C], beta[BV_C];
  grad__rng rng;
  grad__rng_seed(&rng, 9);
  grad__rng_fill_normal(&rng, x, BV_SIZE, 0.5, 3.0);
  grad__rng_fill_normal(&rng, dy, BV_SIZE, 0, 1);
  grad__rng_fill_normal(&rng, mask, BV_SIZE, 0, 1);
  grad__rng_fill_normal(&rng, gamma, BV_C, 1, 0.3);
  grad__rng_fill_normal(&rng, beta, BV_C, 0, 0.3);
  for (int i = 0; i < BV_SIZE; i += 11) mask[i] = 0.0f; /* not positive: masked */
  static bn_outputs fused, plain;
  bn_vector_run(x, dy, mask, gamma, beta, &fused);
  for (int i = 0; i < BV_SIZE; i++) pre[i] = mask[i] > 0.0f ? dy[i] : 0.0f;
  bn_vector_run(x, pre, NULL, gamma, beta, &plain);
  ck_assert(memcmp(fused.dx, plain.dx, sizeof fused.dx) == 0);
  ck_assert(memcmp(fused.masked, pre, sizeof pre) == 0);
  ck_assert(memcmp(fused.dgamma, plain.dgamma, sizeof fused.dgamma) == 0);
  /* the double reference, channel by channel */
  for (int c = 0; c < BV_C; c++) {
    double s = 0, q = 0, sd = 0, sdx = 0;
    const double m = (double)BV_N * BV_P;
    for (int i = 0; i < BV_N; i++)
      for (int j = 0; j < BV_P; j++) s += x[(i * BV_C + c) * BV_P + j];
    const double mu = s / m;
    for (int i = 0; i < BV_N; i++)
      for (int j = 0; j < BV_P; j++) q += pow(x[(i * BV_C + c) * BV_P + j] - mu, 2);
    const double is = 1.0 / sqrt(q / m + 1e-5);
    ck_assert_double_eq_tol(fused.mean[c], mu, 1e-6 * (1 + fabs(mu)));
    ck_assert_double_eq_tol(fused.invstd[c], is, 1e-6 * is);
    ck_assert_double_eq_tol(fused.rv[c], 0.9 + 0.1 * q / (m - 1), 1e-6 * (1 + q / m));
    for (int i = 0; i < BV_N; i++)
      for (int j = 0; j < BV_P; j++) {
        const int at = (i * BV_C + c) * BV_P + j;
        const double xh = (x[at] - mu) * is, v = gamma[c] * xh + beta[c];
        ck_assert_double_eq_tol(fused.y[at], v > 0 ? v : 0, 1e-5);
        sd += pre[at], sdx += pre[at] * xh;
      }
    ck_assert_double_eq_tol(fused.dbeta[c], sd, 1e-5 * (1 + fabs(sd)));
    ck_assert_double_eq_tol(fused.dgamma[c], sdx, 1e-5 * (1 + fabs(sdx)));
    for (int i = 0; i < BV_N; i++)
      for (int j = 0; j < BV_P; j++) {
        const int at = (i * BV_C + c) * BV_P + j;
        const double xh = (x[at] - mu) * is;
        const double ref = gamma[c] * is * (pre[at] - sd / m - xh * sdx / m);
        ck_assert_double_eq_tol(fused.dx[at], ref, 1e-5 * (1 + fabs(ref)));
      }
  }
  const char *isas[] = {"baseline", "avx2", "avx512"};
  for (int k = 0; k < 3; k++) {
    if (!grad__depthwise_force_isa(isas[k])) continue;
    static bn_outputs other;
    bn_vector_run(x, dy, mask, gamma, beta, &other);
    ck_assert_msg(memcmp(&other, &fused, sizeof other) == 0, "the %s build differs", isas[k]);
  }
  grad__depthwise_force_isa(NULL);
}
END_TEST

START_TEST(batchnorm_statistics_by_hand) {
  /* One channel, values 1..4 over two images: mean 2.5, biased var 1.25,
   * unbiased 5/3. */
  float x[4] = {1, 2, 3, 4}, y[4], gamma = 2.0f, beta = 0.5f, rm = 1.0f, rv = 2.0f, mean, invstd;
  grad__bn_forward_train(x, 2, 1, 2, &gamma, &beta, &rm, &rv, &mean, &invstd, true, y);
  ck_assert_float_eq_tol(mean, 2.5f, 1e-7f);
  ck_assert_float_eq_tol(invstd, (float)(1.0 / sqrt(1.25 + 1e-5)), 1e-6f);
  ck_assert_float_eq_tol(rm, 0.9f * 1.0f + 0.1f * 2.5f, 1e-6f);
  ck_assert_float_eq_tol(rv, (float)(0.9 * 2.0 + 0.1 * 5.0 / 3.0), 1e-6f);
  ck_assert_float_eq(y[0], 0.0f); /* 2 * (-1.342) + 0.5 < 0: ReLU */
  ck_assert_float_eq_tol(y[3], (float)(2.0 * 1.5 / sqrt(1.25 + 1e-5) + 0.5), 1e-5f);
  /* Inference uses the running statistics. */
  float z;
  grad__bn_forward_eval(&x[3], 1, 1, 1, &gamma, &beta, &rm, &rv, false, &z);
  ck_assert_float_eq_tol(z, (float)(2.0 * (4.0 - rm) / sqrt(rv + 1e-5) + 0.5), 1e-5f);
}
END_TEST

/* ---- fusion loss ------------------------------------------------------------ */

enum { FL_N = 2, FL_C = 5, FL_P = 6, FL_SIZE = FL_N * FL_C * FL_P };

typedef struct fusion_case {
  float R[FL_SIZE], F[FL_SIZE];
} fusion_case;

static double fusion_loss_of(void *ctx) {
  fusion_case *c = ctx;
  return grad__fusion_loss(c->R, c->F, FL_N, FL_C, FL_P, NULL);
}

START_TEST(fusion_loss_value_and_gradient) {
  fusion_case c;
  grad__rng rng;
  grad__rng_seed(&rng, 9);
  grad__rng_fill_normal(&rng, c.F, FL_SIZE, 0, 1);
  for (int i = 0; i < FL_SIZE; i++) c.R[i] = c.F[i] + (float)(0.5 * grad__rng_normal(&rng));
  /* Two positions far off: 0.05 * e_p > 0.5 there, so m_p = 0. */
  for (int ch = 0; ch < FL_C; ch++) {
    c.R[ch * FL_P + 1] += 20.0f;
    c.R[(FL_C + ch) * FL_P + 4] -= 18.0f;
  }
  /* The loss from its definition, with s from fusion.c (the head's). */
  double expect = 0.0;
  int zero_m = 0;
  for (int i = 0; i < FL_N; i++) {
    const float *r = c.R + i * FL_C * FL_P, *f = c.F + i * FL_C * FL_P;
    float s[FL_P];
    grad__fusion_weights(r, f, FL_C, FL_P, s, NULL, NULL, NULL, NULL);
    for (int p = 0; p < FL_P; p++) {
      double e = 0.0;
      for (int ch = 0; ch < FL_C; ch++) {
        double fused = s[p] * f[ch * FL_P + p] + (1.0 - s[p]) * r[ch * FL_P + p];
        expect += (fused - f[ch * FL_P + p]) * (fused - f[ch * FL_P + p]);
        e += (r[ch * FL_P + p] - f[ch * FL_P + p]) * (r[ch * FL_P + p] - f[ch * FL_P + p]);
      }
      e /= FL_C;
      ck_assert_msg(fabs(0.05 * e - 0.5) > 0.02, "position on the rounding threshold");
      zero_m += 0.05 * e > 0.5;
    }
  }
  expect /= FL_SIZE;
  ck_assert_int_eq(zero_m, 2);
  float dR[FL_SIZE];
  double loss = grad__fusion_loss(c.R, c.F, FL_N, FL_C, FL_P, dR);
  ck_assert_msg(fabs(loss - expect) < 1e-6 * expect, "loss %.9g, definition %.9g", loss, expect);
  double fd[FL_SIZE];
  finite_differences(c.R, FL_SIZE, 1e-3, fusion_loss_of, &c, fd);
  double err = rel_error(dR, fd, FL_SIZE);
  fprintf(stderr, "fusion loss: relative error of dL/dR %.2e\n", err);
  ck_assert(err < 1e-5);
  /* Elementwise too: the m_p = 0 positions must be right, not just most. */
  for (int i = 0; i < FL_SIZE; i++)
    ck_assert_msg(fabs(dR[i] - fd[i]) < 1e-5 + 1e-4 * fabs(fd[i]), "dR[%d] %g vs %g", i,
                  (double)dR[i], fd[i]);
}
END_TEST

/* ---- the whole store ------------------------------------------------------- */

/*
 * The whole store is checked against a plain double-precision reference of
 * its forward pass written here from docs/method.md (direct convolutions, its own
 * bilinear sampler, BatchNorm, the fusion loss), differentiated by central
 * differences with a step of 1e-6: kinks (ReLU, cell borders, the rounded
 * step) are then almost never crossed and the quotient carries ~1e-10 of
 * noise, so what remains is the float32 error of the analytic backward.
 */
enum { T_C = 4, T_H = 5, T_W = 5, T_P = T_H * T_W, T_RL = 3, T_RG = 2, T_BLOCKS = 2,
       T_BATCH = 2, T_C2 = 2 * T_C, T_E = 12, T_R = T_E / 4 };

/* A CRAD bottleneck's tensors, in the store's order. */
enum { CR_EXPAND, CR_BN1W, CR_BN1B, CR_DW, CR_BN2W, CR_BN2B, CR_SE1, CR_SE2, CR_PROJECT,
       CR_BN3W, CR_BN3B, CR_TENSORS };

typedef struct ref_model {
  double *local_grid, *global_grid, *lw1, *lb1, *lw2, *lb2, *gw1, *gb1, *gw2, *gb2, *out;
  double *conv1[T_BLOCKS], *bn1w[T_BLOCKS], *bn1b[T_BLOCKS];
  double *conv2[T_BLOCKS], *bn2w[T_BLOCKS], *bn2b[T_BLOCKS];
  bool crad;                           /* the decoder: CRAD bottlenecks, else BasicBlocks */
  double *bottleneck[T_BLOCKS][CR_TENSORS];
} ref_model;

/* Bilinear, zero padding, align_corners=False, written as tent weights. */
static void ref_sample(const double *grid, int channels, int res, double x, double y,
                       double *out, size_t stride) {
  double ix = ((x + 1.0) * res - 1.0) / 2.0, iy = ((y + 1.0) * res - 1.0) / 2.0;
  int x0 = (int)floor(ix), y0 = (int)floor(iy);
  for (int c = 0; c < channels; c++) {
    double acc = 0.0;
    for (int yy = y0; yy <= y0 + 1; yy++)
      for (int xx = x0; xx <= x0 + 1; xx++)
        if (xx >= 0 && xx < res && yy >= 0 && yy < res)
          acc += (1.0 - fabs(ix - xx)) * (1.0 - fabs(iy - yy)) *
                 grid[((size_t)c * res + yy) * res + xx];
    out[(size_t)c * stride] = acc;
  }
}

static void ref_conv3x3(const double *w, const double in[T_BATCH][T_C2][T_P],
                        double out[T_BATCH][T_C2][T_P]) {
  for (int i = 0; i < T_BATCH; i++)
    for (int o = 0; o < T_C2; o++)
      for (int y = 0; y < T_H; y++)
        for (int x = 0; x < T_W; x++) {
          double acc = 0.0;
          for (int k = 0; k < T_C2; k++)
            for (int ky = 0; ky < 3; ky++)
              for (int kx = 0; kx < 3; kx++) {
                int sy = y + ky - 1, sx = x + kx - 1;
                if (sy >= 0 && sy < T_H && sx >= 0 && sx < T_W)
                  acc += w[((o * T_C2 + k) * 3 + ky) * 3 + kx] * in[i][k][sy * T_W + sx];
              }
          out[i][o][y * T_W + x] = acc;
        }
}

static void ref_batchnorm(double v[T_BATCH][T_C2][T_P], const double *gamma,
                          const double *beta, bool relu) {
  for (int c = 0; c < T_C2; c++) {
    double mean = 0.0, var = 0.0;
    for (int i = 0; i < T_BATCH; i++)
      for (int p = 0; p < T_P; p++) mean += v[i][c][p];
    mean /= T_BATCH * T_P;
    for (int i = 0; i < T_BATCH; i++)
      for (int p = 0; p < T_P; p++) var += (v[i][c][p] - mean) * (v[i][c][p] - mean);
    var /= T_BATCH * T_P;
    for (int i = 0; i < T_BATCH; i++)
      for (int p = 0; p < T_P; p++) {
        double y = gamma[c] * (v[i][c][p] - mean) / sqrt(var + 1e-5) + beta[c];
        v[i][c][p] = relu && y < 0.0 ? 0.0 : y;
      }
  }
}

/* BatchNorm with batch statistics on v (T_BATCH x channels x T_P). */
static void ref_batchnorm_flat(double *v, int channels, const double *gamma, const double *beta) {
  for (int c = 0; c < channels; c++) {
    double mean = 0.0, var = 0.0;
    for (int i = 0; i < T_BATCH; i++)
      for (int p = 0; p < T_P; p++) mean += v[(i * channels + c) * T_P + p];
    mean /= T_BATCH * T_P;
    for (int i = 0; i < T_BATCH; i++)
      for (int p = 0; p < T_P; p++) {
        double d = v[(i * channels + c) * T_P + p] - mean;
        var += d * d;
      }
    var /= T_BATCH * T_P;
    for (int i = 0; i < T_BATCH; i++)
      for (int p = 0; p < T_P; p++) {
        double *x = &v[(i * channels + c) * T_P + p];
        *x = gamma[c] * (*x - mean) / sqrt(var + 1e-5) + beta[c];
      }
  }
}

static double ref_hard_swish(double x) { return x * fmin(fmax(x + 3.0, 0.0), 6.0) / 6.0; }

/* One MobileNetV3 bottleneck (docs/store.md), in place on q. */
static void ref_bottleneck(double *const *w, double q[T_BATCH][T_C2][T_P]) {
  static double e1[T_BATCH * T_E * T_P], e2[T_BATCH * T_E * T_P], t[T_BATCH * T_C2 * T_P];
  for (int i = 0; i < T_BATCH; i++)
    for (int e = 0; e < T_E; e++)
      for (int p = 0; p < T_P; p++) {
        double acc = 0.0;
        for (int k = 0; k < T_C2; k++) acc += w[CR_EXPAND][e * T_C2 + k] * q[i][k][p];
        e1[(i * T_E + e) * T_P + p] = acc;
      }
  ref_batchnorm_flat(e1, T_E, w[CR_BN1W], w[CR_BN1B]);
  for (int j = 0; j < T_BATCH * T_E * T_P; j++) e1[j] = ref_hard_swish(e1[j]);
  for (int i = 0; i < T_BATCH; i++)
    for (int e = 0; e < T_E; e++)
      for (int y = 0; y < T_H; y++)
        for (int x = 0; x < T_W; x++) {
          double acc = 0.0;
          for (int ky = 0; ky < 3; ky++)
            for (int kx = 0; kx < 3; kx++) {
              int sy = y + ky - 1, sx = x + kx - 1;
              if (sy >= 0 && sy < T_H && sx >= 0 && sx < T_W)
                acc += w[CR_DW][e * 9 + ky * 3 + kx] * e1[(i * T_E + e) * T_P + sy * T_W + sx];
            }
          e2[(i * T_E + e) * T_P + y * T_W + x] = acc;
        }
  ref_batchnorm_flat(e2, T_E, w[CR_BN2W], w[CR_BN2B]);
  for (int i = 0; i < T_BATCH; i++) { /* squeeze-and-excitation */
    double pooled[T_E], z[T_R];
    for (int e = 0; e < T_E; e++) {
      pooled[e] = 0.0;
      for (int p = 0; p < T_P; p++) pooled[e] += e2[(i * T_E + e) * T_P + p] / T_P;
    }
    for (int r = 0; r < T_R; r++) {
      double acc = 0.0;
      for (int e = 0; e < T_E; e++) acc += w[CR_SE1][r * T_E + e] * pooled[e];
      z[r] = fmax(acc, 0.0);
    }
    for (int e = 0; e < T_E; e++) {
      double acc = 0.0;
      for (int r = 0; r < T_R; r++) acc += w[CR_SE2][e * T_R + r] * z[r];
      double gate = fmin(fmax(acc + 3.0, 0.0), 6.0) / 6.0;
      for (int p = 0; p < T_P; p++) e2[(i * T_E + e) * T_P + p] *= gate;
    }
  }
  for (int j = 0; j < T_BATCH * T_E * T_P; j++) e2[j] = ref_hard_swish(e2[j]);
  for (int i = 0; i < T_BATCH; i++)
    for (int c = 0; c < T_C2; c++)
      for (int p = 0; p < T_P; p++) {
        double acc = 0.0;
        for (int e = 0; e < T_E; e++) acc += w[CR_PROJECT][c * T_E + e] * e2[(i * T_E + e) * T_P + p];
        t[(i * T_C2 + c) * T_P + p] = acc;
      }
  ref_batchnorm_flat(t, T_C2, w[CR_BN3W], w[CR_BN3B]);
  for (int i = 0; i < T_BATCH; i++)
    for (int c = 0; c < T_C2; c++)
      for (int p = 0; p < T_P; p++) q[i][c][p] += t[(i * T_C2 + c) * T_P + p];
}

/* The training forward (batch statistics, noisy local coordinates) and
 * the fusion loss, all in double. R (optional) receives the reconstruction. */
static int ref_outside, ref_zero_m; /* coverage of the last ref_loss with R */

static double ref_loss(const ref_model *m, const float *F, const float *noise, double *R) {
  static double q[T_BATCH][T_C2][T_P], t1[T_BATCH][T_C2][T_P], t2[T_BATCH][T_C2][T_P];
  double rec[T_BATCH][T_C][T_P];
  for (int i = 0; i < T_BATCH; i++) {
    const float *f = F + i * T_C * T_P;
    double h[T_C][T_P], u[2][T_P], g[T_C], a[T_C], v[2];
    for (int c = 0; c < T_C; c++)
      for (int p = 0; p < T_P; p++) {
        double acc = m->lb1[c];
        for (int k = 0; k < T_C; k++) acc += m->lw1[c * T_C + k] * f[k * T_P + p];
        h[c][p] = tanh(acc);
      }
    for (int j = 0; j < 2; j++)
      for (int p = 0; p < T_P; p++) {
        double acc = m->lb2[j];
        for (int k = 0; k < T_C; k++) acc += m->lw2[j * T_C + k] * h[k][p];
        u[j][p] = tanh(acc) + noise[(i * 2 + j) * T_P + p];
        if (R && fabs(u[j][p]) > 1.0) ref_outside++;
      }
    for (int c = 0; c < T_C; c++) {
      g[c] = 0.0;
      for (int p = 0; p < T_P; p++) g[c] += f[c * T_P + p];
      g[c] /= T_P;
    }
    for (int c = 0; c < T_C; c++) {
      double acc = m->gb1[c];
      for (int k = 0; k < T_C; k++) acc += m->gw1[c * T_C + k] * g[k];
      a[c] = tanh(acc);
    }
    for (int j = 0; j < 2; j++) {
      double acc = m->gb2[j];
      for (int k = 0; k < T_C; k++) acc += m->gw2[j * T_C + k] * a[k];
      v[j] = tanh(acc);
    }
    ref_sample(m->global_grid, T_C * T_P, T_RG, v[0], v[1], &q[i][0][0], 1);
    for (int p = 0; p < T_P; p++)
      ref_sample(m->local_grid, T_C, T_RL, u[0][p], u[1][p], &q[i][T_C][p], T_P);
  }
  for (int b = 0; b < T_BLOCKS && m->crad; b++) ref_bottleneck(m->bottleneck[b], q);
  for (int b = 0; b < T_BLOCKS && !m->crad; b++) {
    ref_conv3x3(m->conv1[b], (const double(*)[T_C2][T_P])q, t1);
    ref_batchnorm(t1, m->bn1w[b], m->bn1b[b], true);
    ref_conv3x3(m->conv2[b], (const double(*)[T_C2][T_P])t1, t2);
    ref_batchnorm(t2, m->bn2w[b], m->bn2b[b], false);
    for (int i = 0; i < T_BATCH; i++)
      for (int c = 0; c < T_C2; c++)
        for (int p = 0; p < T_P; p++) q[i][c][p] = fmax(t2[i][c][p] + q[i][c][p], 0.0);
  }
  double loss = 0.0;
  for (int i = 0; i < T_BATCH; i++) {
    const float *f = F + i * T_C * T_P;
    for (int c = 0; c < T_C; c++)
      for (int p = 0; p < T_P; p++) {
        double acc = 0.0;
        for (int k = 0; k < T_C2; k++) acc += m->out[c * T_C2 + k] * q[i][k][p];
        rec[i][c][p] = acc;
        if (R) R[(i * T_C + c) * T_P + p] = acc;
      }
    for (int p = 0; p < T_P; p++) {
      double dotp = 0.0, rr = 0.0, ff = 0.0, e = 0.0;
      for (int c = 0; c < T_C; c++) {
        double r = rec[i][c][p], x = f[c * T_P + p];
        dotp += r * x, rr += r * r, ff += x * x, e += (r - x) * (r - x);
      }
      double mstep = 1.0 - nearbyint(fmin(fmax(0.05 * e / T_C, 0.0), 1.0));
      if (R && mstep == 0.0) ref_zero_m++;
      double s = 0.3 * mstep + 0.7 * dotp / (fmax(sqrt(rr), 1e-8) * fmax(sqrt(ff), 1e-8));
      loss += (1.0 - s) * (1.0 - s) * e; /* sum_c (s f + (1-s) r - f)^2 */
    }
  }
  return loss / (T_BATCH * T_C * T_P);
}

/* A double copy of the named parameter of s. */
static double *ref_param(grad_store *s, const char *name) {
  for (size_t i = 0; i < grad__store_param_count(s); i++) {
    grad__param *p = grad__store_param(s, i);
    if (strcmp(p->name, name) != 0) continue;
    double *v = malloc(sizeof(double) * p->count);
    for (size_t j = 0; j < p->count; j++) v[j] = p->value[j];
    return v;
  }
  ck_abort_msg("no parameter %s", name);
  return NULL;
}

static void ref_from_store(ref_model *m, grad_store *s, double **by_index) {
  char name[96];
  m->local_grid = ref_param(s, "store.local_grid");
  m->global_grid = ref_param(s, "store.global_grid");
  m->lw1 = ref_param(s, "store.local_net.0.weight");
  m->lb1 = ref_param(s, "store.local_net.0.bias");
  m->lw2 = ref_param(s, "store.local_net.1.weight");
  m->lb2 = ref_param(s, "store.local_net.1.bias");
  m->gw1 = ref_param(s, "store.global_net.0.weight");
  m->gb1 = ref_param(s, "store.global_net.0.bias");
  m->gw2 = ref_param(s, "store.global_net.1.weight");
  m->gb2 = ref_param(s, "store.global_net.1.bias");
  m->out = ref_param(s, "store.out.weight");
  /* The store lists its parameters in this order (lib/store/store_internal.h's contract
   * with the optimiser): grids, local net, global net, blocks, output. */
  double *fixed[10] = {m->local_grid, m->global_grid, m->lw1, m->lb1, m->lw2,
                       m->lb2, m->gw1, m->gb1, m->gw2, m->gb2};
  for (int i = 0; i < 10; i++) by_index[i] = fixed[i];
  m->crad = grad__store_config_of(s)->decoder == GRAD__DECODER_CRAD;
  if (m->crad) {
    const char *names[CR_TENSORS] = {"expand.weight",    "bn1.weight",       "bn1.bias",
                                     "depthwise.weight", "bn2.weight",       "bn2.bias",
                                     "se.reduce.weight", "se.expand.weight", "project.weight",
                                     "bn3.weight",       "bn3.bias"};
    ck_assert_int_eq(grad__store_param_count(s), 11 + CR_TENSORS * T_BLOCKS);
    for (int b = 0; b < T_BLOCKS; b++)
      for (int k = 0; k < CR_TENSORS; k++) {
        snprintf(name, sizeof name, "store.decoder.%d.%s", b, names[k]);
        by_index[10 + CR_TENSORS * b + k] = m->bottleneck[b][k] = ref_param(s, name);
      }
    by_index[10 + CR_TENSORS * T_BLOCKS] = m->out;
    return;
  }
  double **slots[6] = {m->conv1, m->bn1w, m->bn1b, m->conv2, m->bn2w, m->bn2b};
  const char *parts[6] = {"conv1.weight", "bn1.weight", "bn1.bias",
                          "conv2.weight", "bn2.weight", "bn2.bias"};
  for (int b = 0; b < T_BLOCKS; b++)
    for (int k = 0; k < 6; k++) {
      snprintf(name, sizeof name, "store.decoder.%d.%s", b, parts[k]);
      slots[k][b] = ref_param(s, name);
    }
  ck_assert_int_eq(grad__store_param_count(s), 11 + 6 * T_BLOCKS);
  for (int b = 0; b < T_BLOCKS; b++)
    for (int k = 0; k < 6; k++) by_index[10 + 6 * b + k] = slots[k][b];
  by_index[10 + 6 * T_BLOCKS] = m->out;
}

/* Scales that make every path matter (the method's 0.01 init leaves the
 * coordinates at the grid centre); the same rules as make_store_golden.py. */
static void randomise(grad_store *s, uint64_t seed) {
  grad__rng rng;
  grad__rng_seed(&rng, seed);
  for (size_t i = 0; i < grad__store_param_count(s); i++) {
    grad__param *p = grad__store_param(s, i);
    bool bn = strstr(p->name, ".bn") != NULL, bias = strstr(p->name, ".bias") != NULL;
    if (strstr(p->name, "_grid")) {
      grad__rng_fill_normal(&rng, p->value, p->count, 0, 1);
    } else if (bn && !bias) {
      for (size_t j = 0; j < p->count; j++) p->value[j] = (float)(0.5 + grad__rng_uniform(&rng));
    } else if (bn) {
      grad__rng_fill_normal(&rng, p->value, p->count, 0, 0.1);
    } else if (strstr(p->name, "decoder")) { /* He-like: std sqrt(2 / fan-in) */
      grad__rng_fill_normal(&rng, p->value, p->count, 0,
                            sqrt(2.0 * (double)p->shape[0] / (double)p->count));
    } else if (strstr(p->name, "_net")) {
      grad__rng_fill_normal(&rng, p->value, p->count, 0, bias ? 0.2 : 0.6);
    } else {
      grad__rng_fill_normal(&rng, p->value, p->count, 0, 0.3);
    }
  }
}

/* _i = 0: BasicBlock decoder; 1: CRAD bottlenecks with expansion T_E. */
START_TEST(store_backward_matches_finite_differences) {
  static float F[T_BATCH * T_C * T_P], noise[T_BATCH * 2 * T_P], R[T_BATCH * T_C * T_P],
      dR[T_BATCH * T_C * T_P];
  static double Rref[T_BATCH * T_C * T_P];
  const grad__store_config config = {T_C, T_H, T_W, T_RL, T_RG, T_BLOCKS,
                                     _i ? GRAD__DECODER_CRAD : GRAD__DECODER_BASIC,
                                     _i ? T_E : 0};
  grad_store *store = NULL;
  grad_workspace *ws = NULL;
  ck_assert_int_eq(grad__store_create(&config, 1, &store), GRAD_OK);
  ck_assert_int_eq(grad_workspace_create(&ws), GRAD_OK);
  randomise(store, 77);
  grad__rng rng;
  grad__rng_seed(&rng, 78);
  grad__rng_fill_normal(&rng, F, T_BATCH * T_C * T_P, 0, 1);
  for (int c = 0; c < T_C; c++) F[c * T_P + 7] *= 8.0f; /* one position with m_p = 0 */
  grad__rng_fill_normal(&rng, noise, T_BATCH * 2 * T_P, 0, 0.4);

  grad__store_zero_grad(store);
  grad__store_tape *tape = NULL;
  ck_assert_int_eq(grad__store_forward_train(store, ws, F, T_BATCH, noise, R, &tape), GRAD_OK);
  double loss = grad__fusion_loss(R, F, T_BATCH, T_C, T_P, dR);
  ck_assert_int_eq(grad__store_backward(store, tape, dR, ws), GRAD_OK);

  ref_model m;
  double *by_index[11 + CR_TENSORS * T_BLOCKS];
  ref_from_store(&m, store, by_index);
  ref_outside = ref_zero_m = 0;
  double ref = ref_loss(&m, F, noise, Rref);
  /* Some local coordinates leave the grid, and the rounded step is hit. */
  ck_assert_int_gt(ref_outside, 5);
  ck_assert_int_ge(ref_zero_m, 1);
  /* The float forward agrees with the double reference. */
  double worst_r = 0.0, max_r = 0.0;
  for (int i = 0; i < T_BATCH * T_C * T_P; i++) {
    worst_r = fmax(worst_r, fabs(R[i] - Rref[i]));
    max_r = fmax(max_r, fabs(Rref[i]));
  }
  fprintf(stderr, "store: forward max|R - Rref| / max|Rref| = %.2e, loss %.9g vs %.9g\n",
          worst_r / max_r, loss, ref);
  ck_assert(worst_r <= 1e-5 * max_r);
  ck_assert(fabs(loss - ref) <= 1e-5 * ref);

  double worst = 0.0;
  const double h = 1e-6;
  for (size_t i = 0; i < grad__store_param_count(store); i++) {
    grad__param *p = grad__store_param(store, i);
    double *v = by_index[i], *fd = malloc(sizeof(double) * p->count);
    for (size_t j = 0; j < p->count; j++) {
      double keep = v[j];
      v[j] = keep + h;
      double lp = ref_loss(&m, F, noise, NULL);
      v[j] = keep - h;
      double lm = ref_loss(&m, F, noise, NULL);
      v[j] = keep;
      fd[j] = (lp - lm) / (2.0 * h);
    }
    double err = rel_error(p->grad, fd, p->count);
    fprintf(stderr, "store: %-32s %5zu values, relative error %.2e\n", p->name, p->count, err);
    ck_assert_msg(err < 1e-4, "%s: relative error %g", p->name, err);
    if (err > worst) worst = err;
    free(fd);
  }
  fprintf(stderr, "store: worst relative error %.2e\n", worst);
  for (size_t i = 0; i < grad__store_param_count(store); i++) free(by_index[i]);
  grad_store_free(store);
  grad_workspace_free(ws);
}
END_TEST

static Suite *grad_suite(void) {
  Suite *s = suite_create("store_grad");
  TCase *tc = tcase_create("finite_differences");
  tcase_set_timeout(tc, 60);
  tcase_add_loop_test(tc, conv_backward_matches_finite_differences, 0,
                      sizeof conv_cases / sizeof conv_cases[0]);
  tcase_add_test(tc, batchnorm_backward_matches_finite_differences);
  tcase_add_test(tc, batchnorm_statistics_by_hand);
  tcase_add_test(tc, batchnorm_vector_builds_and_fused_mask);
  tcase_add_test(tc, fusion_loss_value_and_gradient);
  tcase_add_loop_test(tc, store_backward_matches_finite_differences, 0, 2);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return test_run_suite(grad_suite()); }
