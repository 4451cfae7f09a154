/* The PCA channel reduction: known axes, optimality, files, and the
 * experimental public fit (grad_reduction_fit_*). */
#define GRAD_EXPERIMENTAL /* grad_reduction_fit_* (not yet promised) */
#include <unistd.h>

#include <grad/reduction.h>

#include "pca.h"
#include "testutil.h"

static grad_workspace *new_ws(void) {
  grad_workspace *ws = NULL;
  ck_assert_int_eq(grad_workspace_create(&ws), GRAD_OK);
  return ws;
}

/* Eight samples along three orthonormal axes with standard deviations 3, 1
 * and 0.1 (sign patterns that are exactly uncorrelated), around a mean far
 * from zero, split into two images of four positions. */
START_TEST(recovers_known_axes) {
  const double s = 1.0 / sqrt(2.0), t = 1.0 / sqrt(3.0), u = 1.0 / sqrt(6.0);
  /* Orthonormal axes in 4-D; e2's largest loading is negative, so the sign
   * convention flips it. */
  const double axes[3][4] = {{t, t, t, 0}, {u, -2 * u, u, 0}, {s, 0, -s, 0}};
  const double sd[3] = {3.0, 1.0, 0.1}, mean[4] = {100.0, -50.0, 7.0, 2.0};
  const int pattern[3][8] = {{1, 1, 1, 1, -1, -1, -1, -1},
                             {1, 1, -1, -1, 1, 1, -1, -1},
                             {1, -1, 1, -1, 1, -1, 1, -1}};
  float x[2 * 4 * 4]; /* 2 images x 4 channels x 4 positions */
  for (int k = 0; k < 8; k++) {
    int image = k / 4, p = k % 4;
    for (int c = 0; c < 4; c++) {
      double v = mean[c];
      for (int a = 0; a < 3; a++) v += sd[a] * pattern[a][k] * axes[a][c];
      x[(image * 4 + c) * 4 + p] = (float)v;
    }
  }
  grad_workspace *ws = new_ws();
  grad__pca_fit *fit = NULL;
  ck_assert_int_eq(grad__pca_fit_create(4, &fit), GRAD_OK);
  ck_assert_int_eq(grad__pca_fit_add(fit, x, 1, 4, ws), GRAD_OK);
  ck_assert_int_eq(grad__pca_fit_add(fit, x + 16, 1, 4, ws), GRAD_OK);
  grad__pca *pca = NULL;
  ck_assert_int_eq(grad__pca_fit_finish(fit, 2, &pca), GRAD_OK);
  ck_assert_int_eq(pca->channels, 2);
  ck_assert_int_eq(pca->raw_channels, 4);
  ck_assert(!pca->identity);
  for (int c = 0; c < 4; c++) ck_assert_double_eq_tol(pca->mean[c], mean[c], 1e-4);
  for (int k = 0; k < 2; k++) {
    /* The expected axis, signed by the convention: largest loading positive. */
    int largest = 0;
    for (int c = 1; c < 4; c++)
      if (fabs(axes[k][c]) > fabs(axes[k][largest]) + 1e-12) largest = c;
    double sign = axes[k][largest] < 0 ? -1 : 1;
    for (int c = 0; c < 4; c++)
      ck_assert_double_eq_tol(pca->projection[k * 4 + c], sign * axes[k][c], 1e-5);
  }
  ck_assert_double_eq_tol(pca->retained, 10.0 / 10.01, 1e-6);
  /* Applying it gives the coordinates along the axes. */
  float y[2 * 2 * 4];
  ck_assert_int_eq(grad__pca_apply(pca, x, 2, 4, y, ws), GRAD_OK);
  for (int k = 0; k < 8; k++)
    for (int a = 0; a < 2; a++) {
      double dot = 0;
      for (int c = 0; c < 4; c++) dot += pca->projection[a * 4 + c] * axes[a][c];
      double sign = dot < 0 ? -1 : 1;
      ck_assert_double_eq_tol(y[((k / 4) * 2 + a) * 4 + k % 4], sign * sd[a] * pattern[a][k],
                              1e-3);
    }
  grad__pca_free(pca);
  grad__pca_fit_free(fit);
  grad_workspace_free(ws);
}
END_TEST

enum { CR = 12, C = 4, NIMG = 5, P = 60 };

static void correlated_data(float *x) {
  unsigned state = 99u;
  double mix[CR][CR];
  for (int i = 0; i < CR; i++)
    for (int j = 0; j < CR; j++) {
      mix[i][j] = test_uniform(&state) / (1 + j);
    }
  for (int n = 0; n < NIMG; n++)
    for (int p = 0; p < P; p++) {
      double z[CR];
      for (int j = 0; j < CR; j++) {
        z[j] = test_uniform(&state);
      }
      for (int i = 0; i < CR; i++) {
        double v = 0.5 * i;
        for (int j = 0; j < CR; j++) v += mix[i][j] * z[j];
        x[((size_t)n * CR + i) * P + p] = (float)v;
      }
    }
}

/* Mean squared reconstruction error of x by mean + Q^T Q (x - mean), for a
 * k x CR matrix Q with orthonormal rows. */
static double reconstruction_error(const float *x, const double *mean, const double *q) {
  double err = 0;
  for (int n = 0; n < NIMG; n++)
    for (int p = 0; p < P; p++) {
      double d[CR], y[C], r;
      for (int i = 0; i < CR; i++) d[i] = x[((size_t)n * CR + i) * P + p] - mean[i];
      for (int k = 0; k < C; k++) {
        y[k] = 0;
        for (int i = 0; i < CR; i++) y[k] += q[k * CR + i] * d[i];
      }
      for (int i = 0; i < CR; i++) {
        r = d[i];
        for (int k = 0; k < C; k++) r -= q[k * CR + i] * y[k];
        err += r * r;
      }
    }
  return err / (NIMG * P);
}

static void orthonormalise(double *q) {
  for (int k = 0; k < C; k++) {
    for (int j = 0; j < k; j++) {
      double dot = 0;
      for (int i = 0; i < CR; i++) dot += q[k * CR + i] * q[j * CR + i];
      for (int i = 0; i < CR; i++) q[k * CR + i] -= dot * q[j * CR + i];
    }
    double norm = 0;
    for (int i = 0; i < CR; i++) norm += q[k * CR + i] * q[k * CR + i];
    for (int i = 0; i < CR; i++) q[k * CR + i] /= sqrt(norm);
  }
}

/* PCA's subspace reconstructs the data better than any other of the same
 * size: random subspaces and small perturbations of its own all lose.
 * The reduced channels are uncorrelated, with descending variance, and the
 * error equals the variance left out. */
START_TEST(minimises_reconstruction_error) {
  float *x = malloc(sizeof(float) * NIMG * CR * P), *y = malloc(sizeof(float) * NIMG * C * P);
  correlated_data(x);
  grad_workspace *ws = new_ws();
  grad__pca_fit *fit = NULL;
  ck_assert_int_eq(grad__pca_fit_create(CR, &fit), GRAD_OK);
  ck_assert_int_eq(grad__pca_fit_add(fit, x, 2, P, ws), GRAD_OK);
  ck_assert_int_eq(grad__pca_fit_add(fit, x + 2 * CR * P, NIMG - 2, P, ws), GRAD_OK);
  grad__pca *pca = NULL;
  ck_assert_int_eq(grad__pca_fit_finish(fit, C, &pca), GRAD_OK);
  double mean[CR], q[C * CR], trial[C * CR], total = 0;
  for (int i = 0; i < CR; i++) {
    double s = 0;
    for (int n = 0; n < NIMG; n++)
      for (int p = 0; p < P; p++) s += x[((size_t)n * CR + i) * P + p];
    mean[i] = s / (NIMG * P);
    ck_assert_double_eq_tol(pca->mean[i], mean[i], 1e-5);
    for (int n = 0; n < NIMG; n++)
      for (int p = 0; p < P; p++) {
        double d = x[((size_t)n * CR + i) * P + p] - mean[i];
        total += d * d / (NIMG * P);
      }
  }
  for (int i = 0; i < C * CR; i++) q[i] = pca->projection[i];
  for (int a = 0; a < C; a++) /* orthonormal rows */
    for (int b = 0; b < C; b++) {
      double dot = 0;
      for (int i = 0; i < CR; i++) dot += q[a * CR + i] * q[b * CR + i];
      ck_assert_double_eq_tol(dot, a == b ? 1.0 : 0.0, 1e-6);
    }
  double best = reconstruction_error(x, mean, q);
  ck_assert_double_eq_tol(best, total * (1 - pca->retained), 1e-6 * total);
  unsigned state = 5u;
  for (int trialno = 0; trialno < 40; trialno++) {
    double amount = trialno < 20 ? 10.0 : 0.05; /* random, then nearby subspaces */
    for (int i = 0; i < C * CR; i++) {
      state = state * 1664525u + 1013904223u;
      trial[i] = (trialno < 20 ? 0 : q[i]) + amount * ((state >> 8) / 8388608.0 - 1.0);
    }
    orthonormalise(trial);
    ck_assert_double_gt(reconstruction_error(x, mean, trial), best);
  }
  /* The reduced channels: zero mean, uncorrelated, variances descending. */
  ck_assert_int_eq(grad__pca_apply(pca, x, NIMG, P, y, ws), GRAD_OK);
  double cov[C][C] = {{0}};
  for (int n = 0; n < NIMG; n++)
    for (int p = 0; p < P; p++)
      for (int a = 0; a < C; a++)
        for (int b = 0; b < C; b++)
          cov[a][b] += (double)y[((size_t)n * C + a) * P + p] * y[((size_t)n * C + b) * P + p] /
                       (NIMG * P);
  for (int a = 0; a < C; a++) {
    if (a > 0) ck_assert_double_gt(cov[a - 1][a - 1], cov[a][a]);
    for (int b = 0; b < C; b++)
      if (a != b) ck_assert_double_lt(fabs(cov[a][b]), 1e-5 * cov[0][0]);
  }
  /* The sign convention: every axis's largest-magnitude loading is positive. */
  for (int a = 0; a < C; a++) {
    int largest = 0;
    for (int i = 1; i < CR; i++)
      if (fabs(q[a * CR + i]) > fabs(q[a * CR + largest])) largest = i;
    ck_assert_double_gt(q[a * CR + largest], 0);
  }
  grad__pca_free(pca);
  grad__pca_fit_free(fit);
  grad_workspace_free(ws);
  free(x), free(y);
}
END_TEST

START_TEST(identity_when_not_reducing) {
  float x[3 * 5], y[3 * 5];
  for (int i = 0; i < 15; i++) x[i] = (float)(i * i % 7) - 2.5f;
  grad_workspace *ws = new_ws();
  grad__pca_fit *fit = NULL;
  ck_assert_int_eq(grad__pca_fit_create(3, &fit), GRAD_OK);
  grad__pca *pca = NULL;
  ck_assert_int_eq(grad__pca_fit_finish(fit, 3, &pca), GRAD_E_STATE); /* nothing added */
  ck_assert_int_eq(grad__pca_fit_add(fit, x, 1, 5, ws), GRAD_OK);
  ck_assert_int_eq(grad__pca_fit_finish(fit, 8, &pca), GRAD_OK);
  ck_assert(pca->identity);
  ck_assert_int_eq(pca->channels, 3);
  ck_assert_int_eq(grad__pca_apply(pca, x, 1, 5, y, ws), GRAD_OK);
  ck_assert_mem_eq(x, y, sizeof x);
  grad__pca_free(pca);
  grad__pca_fit_free(fit);
  grad_workspace_free(ws);
}
END_TEST

START_TEST(non_finite_features_fail) {
  float x[2 * 4] = {1, 2, 3, 4, 5, 6, 7, NAN};
  grad_workspace *ws = new_ws();
  grad__pca_fit *fit = NULL;
  ck_assert_int_eq(grad__pca_fit_create(2, &fit), GRAD_OK);
  ck_assert_int_eq(grad__pca_fit_add(fit, x, 1, 4, ws), GRAD_OK);
  grad__pca *pca = NULL;
  ck_assert_int_eq(grad__pca_fit_finish(fit, 1, &pca), GRAD_E_NUMERIC);
  ck_assert_ptr_null(pca);
  grad__pca_fit_free(fit);
  grad_workspace_free(ws);
}
END_TEST

/* The fit of all NIMG maps of x at once. */
static grad__pca *fit_all(const float *x, grad_workspace *ws) {
  grad__pca_fit *fit = NULL;
  grad__pca *pca = NULL;
  ck_assert_int_eq(grad__pca_fit_create(CR, &fit), GRAD_OK);
  ck_assert_int_eq(grad__pca_fit_add(fit, x, NIMG, P, ws), GRAD_OK);
  ck_assert_int_eq(grad__pca_fit_finish(fit, C, &pca), GRAD_OK);
  grad__pca_fit_free(fit);
  return pca;
}

/* The public fit, fed one map per call, is the internal fit of all maps at
 * once, bit for bit (the sums are per image either way), and the public
 * apply of it gives what the internal apply gives. */
START_TEST(public_fit_is_the_internal_fit) {
  float *x = malloc(sizeof(float) * NIMG * CR * P);
  float *y1 = malloc(sizeof(float) * NIMG * C * P), *y2 = malloc(sizeof(float) * NIMG * C * P);
  correlated_data(x);
  grad_workspace *ws = new_ws();
  grad__pca *pca = fit_all(x, ws);

  grad_reduction_fit *mine = NULL;
  grad_reduction *reduction = NULL;
  ck_assert_int_eq(grad_reduction_fit_create(CR, &mine), GRAD_OK);
  ck_assert_int_eq(grad_reduction_fit_finish(mine, C, &reduction), GRAD_E_STATE);
  ck_assert_ptr_null(reduction);
  for (int i = 0; i < NIMG; i++)
    ck_assert_int_eq(grad_reduction_fit_add(mine, ws, x + (size_t)i * CR * P, 1, P), GRAD_OK);
  ck_assert_int_eq(grad_reduction_fit_finish(mine, C, &reduction), GRAD_OK);
  ck_assert_int_eq(grad_reduction_input_channels(reduction), CR);
  ck_assert_int_eq(grad_reduction_channels(reduction), C);
  ck_assert_double_eq(grad_reduction_retained_variance(reduction), pca->retained);
  const grad__pca *theirs = pca, *ours = (const grad__pca *)(const void *)reduction;
  ck_assert_mem_eq(ours->mean, theirs->mean, sizeof(float) * CR);
  ck_assert_mem_eq(ours->projection, theirs->projection, sizeof(float) * C * CR);
  ck_assert_int_eq(grad_reduction_apply(reduction, ws, x, NIMG, P, y1), GRAD_OK);
  ck_assert_int_eq(grad__pca_apply(pca, x, NIMG, P, y2, ws), GRAD_OK);
  ck_assert_mem_eq(y1, y2, sizeof(float) * NIMG * C * P);

  ck_assert_int_eq(grad_reduction_fit_add(mine, ws, x, 0, P), GRAD_E_INVALID_ARG);
  ck_assert_int_eq(grad_reduction_fit_add(mine, ws, x, 1, 0), GRAD_E_INVALID_ARG);
  ck_assert_int_eq(grad_reduction_fit_add(mine, NULL, x, 1, P), GRAD_E_INVALID_ARG);
  ck_assert_int_eq(grad_reduction_fit_add(NULL, ws, x, 1, P), GRAD_E_INVALID_ARG);
  grad_reduction *none = NULL;
  ck_assert_int_eq(grad_reduction_fit_finish(NULL, C, &none), GRAD_E_INVALID_ARG);
  ck_assert_int_eq(grad_reduction_fit_finish(mine, 0, &none), GRAD_E_INVALID_ARG);
  ck_assert_ptr_null(none);
  grad_reduction_fit *bad = NULL;
  ck_assert_int_eq(grad_reduction_fit_create(0, &bad), GRAD_E_INVALID_ARG);
  ck_assert_ptr_null(bad);
  ck_assert_int_eq(grad_reduction_fit_create(CR, NULL), GRAD_E_INVALID_ARG);
  grad_reduction_free(NULL);
  grad_reduction_fit_free(NULL);

  grad_reduction_free(reduction);
  grad_reduction_fit_free(mine);
  grad__pca_free(pca);
  grad_workspace_free(ws);
  free(x), free(y1), free(y2);
}
END_TEST

/* Written and read back under reduce.mean / reduce.projection; the
 * identity is recognised again on reading. */
START_TEST(file_round_trip) {
  float *x = malloc(sizeof(float) * NIMG * CR * P);
  float *y1 = malloc(sizeof(float) * NIMG * C * P), *y2 = malloc(sizeof(float) * NIMG * C * P);
  correlated_data(x);
  grad_workspace *ws = new_ws();
  grad__pca *pca = fit_all(x, ws), *back = NULL, *id = NULL, *id_back = NULL;
  const char *dir = test_tmpdir();
  char path[512], path_id[512];
  snprintf(path, sizeof path, "%s/reduce.safetensors", dir);
  snprintf(path_id, sizeof path_id, "%s/identity.safetensors", dir);
  grad__st_writer *w = NULL;
  ck_assert_int_eq(grad__st_writer_create(&w), GRAD_OK);
  ck_assert_int_eq(grad__pca_write(pca, w), GRAD_OK);
  ck_assert_int_eq(grad__st_writer_save(w, path), GRAD_OK);
  grad__st_writer_free(w);
  ck_assert_int_eq(grad__pca_identity(6, &id), GRAD_OK);
  ck_assert_int_eq(grad__st_writer_create(&w), GRAD_OK);
  ck_assert_int_eq(grad__pca_write(id, w), GRAD_OK);
  ck_assert_int_eq(grad__st_writer_save(w, path_id), GRAD_OK);
  grad__st_writer_free(w);

  grad__st_file *f = NULL;
  ck_assert_int_eq(grad__st_open(path, &f), GRAD_OK);
  const grad__st_tensor *t = grad__st_find(f, "reduce.projection");
  ck_assert_ptr_nonnull(t);
  ck_assert(t->ndim == 2 && t->shape[0] == C && t->shape[1] == CR);
  ck_assert_int_eq(grad__pca_read(f, &back), GRAD_OK);
  grad__st_close(f);
  ck_assert(!back->identity);
  ck_assert_double_eq_tol(back->retained, pca->retained, 1e-15);
  ck_assert_int_eq(grad__pca_apply(pca, x, NIMG, P, y1, ws), GRAD_OK);
  ck_assert_int_eq(grad__pca_apply(back, x, NIMG, P, y2, ws), GRAD_OK);
  ck_assert_mem_eq(y1, y2, sizeof(float) * NIMG * C * P);

  ck_assert_int_eq(grad__st_open(path_id, &f), GRAD_OK);
  ck_assert_int_eq(grad__pca_read(f, &id_back), GRAD_OK);
  grad__st_close(f);
  ck_assert(id_back->identity);
  ck_assert_int_eq(id_back->channels, 6);

  /* A file without the reduction says which tensor is missing. */
  ck_assert_int_eq(grad__st_writer_create(&w), GRAD_OK);
  int64_t shape[1] = {3};
  float three[3] = {1, 2, 3};
  ck_assert_int_eq(grad__st_writer_add(w, "other", 1, shape, three), GRAD_OK);
  ck_assert_int_eq(grad__st_writer_save(w, path), GRAD_OK);
  grad__st_writer_free(w);
  ck_assert_int_eq(grad__st_open(path, &f), GRAD_OK);
  grad__pca *none = NULL;
  ck_assert_int_eq(grad__pca_read(f, &none), GRAD_E_MISSING);
  ck_assert_ptr_nonnull(strstr(grad_last_error(), "reduce.projection"));
  grad__st_close(f);

  unlink(path), unlink(path_id);
  grad__pca_free(pca), grad__pca_free(back), grad__pca_free(id), grad__pca_free(id_back);
  grad_workspace_free(ws);
  free(x), free(y1), free(y2);
}
END_TEST

int main(void) {
  Suite *s = suite_create("pca");
  TCase *tc = tcase_create("pca");
  tcase_add_test(tc, recovers_known_axes);
  tcase_add_test(tc, minimises_reconstruction_error);
  tcase_add_test(tc, identity_when_not_reducing);
  tcase_add_test(tc, non_finite_features_fail);
  tcase_add_test(tc, file_round_trip);
  tcase_add_test(tc, public_fit_is_the_internal_fit);
  suite_add_tcase(s, tc);
  return test_run_suite(s);
}
