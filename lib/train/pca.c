/* PCA channel reduction: streamed covariance, LAPACK dsyevd, projection. */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pca.h"
#include "threading.h"

/* LAPACK's symmetric eigensolver (OpenBLAS ships LAPACK; lapacke.h is not
 * needed). Fortran ABI: everything by reference, and the lengths of the two
 * character arguments passed by value at the end, as gfortran expects. */
extern void dsyevd_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda,
                    double *w, double *work, const int *lwork, int *iwork, const int *liwork,
                    int *info, size_t jobz_len, size_t uplo_len);

struct grad__pca_fit {
  int raw_channels;
  double *shift;   /* C_raw: the first image's channel means */
  double *sum;     /* C_raw: sum of (x - shift) */
  double *cross;   /* C_raw x C_raw, upper triangle: sum of (x - shift)(x - shift)^T */
  size_t samples;
};

void grad__pca_free(grad__pca *pca) {
  if (!pca) return;
  grad__free(pca->mean);
  grad__free(pca->projection);
  grad__free(pca);
}

static grad_status pca_alloc(int raw_channels, int channels, grad__pca **out) {
  *out = NULL;
  grad__pca *pca = grad__calloc(1, sizeof *pca);
  if (!pca) return grad__fail(GRAD_E_NOMEM, "out of memory for the channel reduction");
  pca->raw_channels = raw_channels;
  pca->channels = channels;
  pca->mean = grad__calloc((size_t)raw_channels, sizeof(float));
  pca->projection = grad__malloc_array((size_t)channels * (size_t)raw_channels, sizeof(float));
  if (!pca->mean || !pca->projection) {
    grad__pca_free(pca);
    return grad__fail(GRAD_E_NOMEM, "out of memory for a %d x %d channel reduction", channels,
                      raw_channels);
  }
  *out = pca;
  return GRAD_OK;
}

grad_status grad__pca_identity(int raw_channels, grad__pca **out) {
  if (!out) return grad__fail(GRAD_E_INVALID_ARG, "grad__pca_identity: out is NULL");
  *out = NULL;
  if (raw_channels <= 0)
    return grad__fail(GRAD_E_INVALID_ARG, "channel reduction of %d channels", raw_channels);
  grad__pca *pca = NULL;
  grad_status st = pca_alloc(raw_channels, raw_channels, &pca);
  if (st != GRAD_OK) return st;
  size_t c = (size_t)raw_channels;
  memset(pca->projection, 0, c * c * sizeof(float));
  for (size_t i = 0; i < c; i++) pca->projection[i * c + i] = 1.0f;
  pca->identity = true;
  pca->retained = 1.0;
  *out = pca;
  return GRAD_OK;
}

grad_status grad__pca_fit_create(int raw_channels, grad__pca_fit **out) {
  if (!out) return grad__fail(GRAD_E_INVALID_ARG, "grad__pca_fit_create: out is NULL");
  *out = NULL;
  if (raw_channels <= 0 || raw_channels > 65536)
    return grad__fail(GRAD_E_INVALID_ARG, "channel reduction of %d channels", raw_channels);
  size_t c = (size_t)raw_channels;
  grad__pca_fit *fit = grad__calloc(1, sizeof *fit);
  if (fit) {
    fit->raw_channels = raw_channels;
    fit->shift = grad__calloc(c, sizeof(double));
    fit->sum = grad__calloc(c, sizeof(double));
    fit->cross = grad__calloc(c * c, sizeof(double));
  }
  if (!fit || !fit->shift || !fit->sum || !fit->cross) {
    grad__pca_fit_free(fit);
    return grad__fail(GRAD_E_NOMEM, "out of memory for a %d-channel covariance", raw_channels);
  }
  *out = fit;
  return GRAD_OK;
}

void grad__pca_fit_free(grad__pca_fit *fit) {
  if (!fit) return;
  grad__free(fit->shift);
  grad__free(fit->sum);
  grad__free(fit->cross);
  grad__free(fit);
}

/* Each image's products are formed by ssyrk in float over its positions
 * (a few hundred terms) and then summed in double across images. */
grad_status grad__pca_fit_add(grad__pca_fit *fit, const float *features, int n, size_t positions,
                              grad_workspace *ws) {
  if (!fit || (!features && n > 0) || n < 0 || !ws)
    return grad__fail(GRAD_E_INVALID_ARG, "grad__pca_fit_add: NULL argument or n = %d", n);
  if (n == 0 || positions == 0) return GRAD_OK;
  size_t c = (size_t)fit->raw_channels;
  size_t mark = grad__ws_mark(ws);
  float *centred = grad__ws_floats(ws, c * positions);
  float *gram = grad__ws_floats(ws, c * c);
  if (!centred || !gram) {
    grad__ws_release(ws, mark);
    return grad__fail_context(GRAD_E_NOMEM, "channel reduction fit: ");
  }
  grad_status memory = grad__blas_memory_check("channel reduction fit");
  if (memory != GRAD_OK) {
    grad__ws_release(ws, mark);
    return memory;
  }
  for (int i = 0; i < n; i++) {
    const float *x = features + (size_t)i * c * positions;
    if (fit->samples == 0)
      for (size_t ch = 0; ch < c; ch++) {
        double s = 0.0;
        for (size_t p = 0; p < positions; p++) s += x[ch * positions + p];
        fit->shift[ch] = s / (double)positions;
      }
    for (size_t ch = 0; ch < c; ch++) {
      float shift = (float)fit->shift[ch];
      double s = 0.0;
      for (size_t p = 0; p < positions; p++) {
        float v = x[ch * positions + p] - shift;
        centred[ch * positions + p] = v;
        s += v;
      }
      fit->sum[ch] += s;
    }
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasNoTrans, (int)c, (int)positions, 1.0f, centred,
                (int)positions, 0.0f, gram, (int)c);
    for (size_t r = 0; r < c; r++)
      for (size_t col = r; col < c; col++) fit->cross[r * c + col] += gram[r * c + col];
    fit->samples += positions;
  }
  grad__ws_release(ws, mark);
  return GRAD_OK;
}

/* Covariance (full symmetric, double) from the shifted sums. */
static bool covariance(const grad__pca_fit *fit, double *cov, double *mean) {
  size_t c = (size_t)fit->raw_channels;
  double inv = 1.0 / (double)fit->samples;
  bool finite = true;
  for (size_t i = 0; i < c; i++) {
    double d = fit->sum[i] * inv;
    mean[i] = fit->shift[i] + d;
    if (!isfinite(mean[i])) finite = false;
  }
  for (size_t r = 0; r < c; r++)
    for (size_t col = r; col < c; col++) {
      double v = fit->cross[r * c + col] * inv - (fit->sum[r] * inv) * (fit->sum[col] * inv);
      if (!isfinite(v)) finite = false;
      cov[r * c + col] = cov[col * c + r] = v;
    }
  return finite;
}

static grad_status eigen(int n, double *a, double *w) {
  int lwork = -1, liwork = -1, info = 0, iwork_query = 0;
  double work_query = 0.0;
  dsyevd_("V", "U", &n, a, &n, w, &work_query, &lwork, &iwork_query, &liwork, &info, 1, 1);
  if (info != 0) return grad__fail(GRAD_E_INTERNAL, "dsyevd workspace query failed (info %d)", info);
  lwork = (int)work_query + 1;
  liwork = iwork_query;
  double *work = grad__malloc_array((size_t)lwork, sizeof(double));
  int *iwork = grad__malloc_array((size_t)(liwork > 0 ? liwork : 1), sizeof(int));
  grad_status st = GRAD_OK;
  if (!work || !iwork) {
    st = grad__fail(GRAD_E_NOMEM, "out of memory for the eigensolver of %d channels", n);
  } else {
    dsyevd_("V", "U", &n, a, &n, w, work, &lwork, iwork, &liwork, &info, 1, 1);
    if (info != 0)
      st = grad__fail(GRAD_E_NUMERIC, "channel reduction: dsyevd did not converge (info %d)",
                      info);
  }
  grad__free(work);
  grad__free(iwork);
  return st;
}

grad_status grad__pca_fit_finish(const grad__pca_fit *fit, int channels, grad__pca **out) {
  if (!fit || !out) return grad__fail(GRAD_E_INVALID_ARG, "grad__pca_fit_finish: NULL argument");
  *out = NULL;
  if (channels <= 0)
    return grad__fail(GRAD_E_INVALID_ARG, "channel reduction to %d channels", channels);
  if (fit->samples == 0)
    return grad__fail(GRAD_E_STATE, "channel reduction: no training features were added");
  int craw = fit->raw_channels;
  if (craw <= channels) return grad__pca_identity(craw, out);
  size_t c = (size_t)craw;
  double *cov = grad__malloc_array(c * c, sizeof(double));
  double *mean = grad__malloc_array(c, sizeof(double));
  double *eig = grad__malloc_array(c, sizeof(double));
  grad__pca *pca = NULL;
  grad_status st = GRAD_OK;
  if (!cov || !mean || !eig) {
    st = grad__fail(GRAD_E_NOMEM, "out of memory for a %d-channel covariance", craw);
    goto done;
  }
  if (!covariance(fit, cov, mean)) {
    st = grad__fail(GRAD_E_NUMERIC, "channel reduction: the training features are not finite");
    goto done;
  }
  /* Symmetric, so the row-major array is also its column-major self;
   * dsyevd leaves eigenvector j (ascending eigenvalues) in column j,
   * i.e. at cov[j * c ...]. */
  st = eigen(craw, cov, eig);
  if (st != GRAD_OK) goto done;
  st = pca_alloc(craw, channels, &pca);
  if (st != GRAD_OK) goto done;
  double total = 0.0, kept = 0.0;
  for (size_t j = 0; j < c; j++) total += fmax(eig[j], 0.0);
  for (int k = 0; k < channels; k++) {
    size_t j = c - 1 - (size_t)k;
    const double *axis = cov + j * c;
    size_t largest = 0;
    for (size_t i = 1; i < c; i++)
      if (fabs(axis[i]) > fabs(axis[largest])) largest = i;
    double sign = axis[largest] < 0 ? -1.0 : 1.0;
    for (size_t i = 0; i < c; i++) pca->projection[(size_t)k * c + i] = (float)(sign * axis[i]);
    kept += fmax(eig[j], 0.0);
  }
  for (size_t i = 0; i < c; i++) pca->mean[i] = (float)mean[i];
  pca->retained = total > 0 ? kept / total : 1.0;
  *out = pca;
done:
  grad__free(cov);
  grad__free(mean);
  grad__free(eig);
  return st;
}

grad_status grad__pca_apply(const grad__pca *pca, const float *raw, int n, size_t positions,
                            float *out, grad_workspace *ws) {
  if (!pca || (!raw && n > 0) || (!out && n > 0) || n < 0 || !ws)
    return grad__fail(GRAD_E_INVALID_ARG, "grad__pca_apply: NULL argument or n = %d", n);
  size_t craw = (size_t)pca->raw_channels, c = (size_t)pca->channels;
  if (pca->identity) {
    memcpy(out, raw, (size_t)n * craw * positions * sizeof(float));
    return GRAD_OK;
  }
  size_t mark = grad__ws_mark(ws);
  float *centred = grad__ws_floats(ws, craw * positions);
  if (!centred) return grad__fail_context(GRAD_E_NOMEM, "channel reduction: ");
  grad_status memory = grad__blas_memory_check("channel reduction");
  if (memory != GRAD_OK) {
    grad__ws_release(ws, mark);
    return memory;
  }
  for (int i = 0; i < n; i++) {
    const float *x = raw + (size_t)i * craw * positions;
    for (size_t ch = 0; ch < craw; ch++) {
      float m = pca->mean[ch];
      for (size_t p = 0; p < positions; p++)
        centred[ch * positions + p] = x[ch * positions + p] - m;
    }
    grad__sgemm(false, false, (int)c, (int)positions, (int)craw, 1.0f, pca->projection,
                (int)craw, centred, (int)positions, 0.0f, out + (size_t)i * c * positions,
                (int)positions, grad__threads(ws));
  }
  grad__ws_release(ws, mark);
  return GRAD_OK;
}

grad_status grad__pca_write(const grad__pca *pca, grad__st_writer *writer) {
  int64_t mean_shape[1] = {pca->raw_channels};
  int64_t proj_shape[2] = {pca->channels, pca->raw_channels};
  grad_status st = grad__st_writer_add(writer, "reduce.mean", 1, mean_shape, pca->mean);
  if (st == GRAD_OK)
    st = grad__st_writer_add(writer, "reduce.projection", 2, proj_shape, pca->projection);
  char value[40];
  snprintf(value, sizeof value, "%.17g", pca->retained);
  if (st == GRAD_OK) st = grad__st_writer_meta(writer, "reduce.retained_variance", value);
  return st;
}

grad_status grad__pca_read(const grad__st_file *file, grad__pca **out) {
  if (!file || !out) return grad__fail(GRAD_E_INVALID_ARG, "grad__pca_read: NULL argument");
  *out = NULL;
  const grad__st_tensor *proj = grad__st_find(file, "reduce.projection");
  if (!proj)
    return grad__fail(GRAD_E_MISSING, "%s: tensor \"reduce.projection\" is absent",
                      grad__st_path(file));
  if (proj->ndim != 2 || proj->shape[0] <= 0 || proj->shape[1] <= 0 ||
      proj->shape[0] > proj->shape[1] || proj->shape[1] > 65536)
    return grad__fail(GRAD_E_SHAPE,
                      "%s: tensor \"reduce.projection\" must be [C, C_raw] with 0 < C <= C_raw",
                      grad__st_path(file));
  int channels = (int)proj->shape[0], craw = (int)proj->shape[1];
  grad__pca *pca = NULL;
  grad_status st = pca_alloc(craw, channels, &pca);
  if (st != GRAD_OK) return st;
  int64_t mean_shape[1] = {craw};
  st = grad__st_read_f32(file, "reduce.projection", 2, proj->shape, true, pca->projection);
  if (st == GRAD_OK) st = grad__st_read_f32(file, "reduce.mean", 1, mean_shape, true, pca->mean);
  if (st != GRAD_OK) {
    grad__pca_free(pca);
    return st;
  }
  bool identity = channels == craw;
  for (size_t i = 0; identity && i < (size_t)craw; i++) {
    if (pca->mean[i] != 0.0f) identity = false;
    for (size_t j = 0; identity && j < (size_t)craw; j++)
      if (pca->projection[i * (size_t)craw + j] != (i == j ? 1.0f : 0.0f)) identity = false;
  }
  pca->identity = identity;
  const char *retained = grad__st_meta(file, "reduce.retained_variance");
  pca->retained = retained ? strtod(retained, NULL) : (identity ? 1.0 : NAN);
  *out = pca;
  return GRAD_OK;
}
