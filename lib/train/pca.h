/*
 * The channel reduction of docs/method.md section 3: a fixed linear map from the
 * C_raw concatenated backbone channels to C, fitted once by PCA on the
 * training features and stored in the model. Every spatial position of
 * every training image is one sample of C_raw values.
 *
 *   y = P (x - mean),  P: C x C_raw, rows the top-C principal axes.
 *
 * No whitening: the rows of P are orthonormal, so distances and the
 * features' scale are kept (the fusion's error threshold of docs/method.md section 7
 * works on that scale). With C_raw <= C the map is the identity (mean 0,
 * P = I, C = C_raw). Features are N,C,H,W float32, channel-major planes.
 */
#ifndef GRAD_PCA_H
#define GRAD_PCA_H

#include <stdbool.h>

#include "core.h"
#include "safetensors.h"

typedef struct grad__pca {
  int raw_channels;       /* C_raw */
  int channels;           /* C (= C_raw for the identity) */
  float *mean;            /* C_raw */
  float *projection;      /* C x C_raw, row-major: row k is the k-th axis */
  bool identity;          /* mean 0 and P = I: applying it is a copy */
  double retained;        /* fraction of the total variance the C axes keep (1 for identity) */
} grad__pca;

void grad__pca_free(grad__pca *pca);

/* The identity map of C_raw channels. */
grad_status grad__pca_identity(int raw_channels, grad__pca **out);

/*
 * Fitting streams the training features through an accumulator, so the raw
 * features of all images never need to be in memory at once. The sums are
 * kept in double around a shift (the first image's channel means), which
 * keeps E[xx^T] - E[x]E[x]^T free of cancellation.
 */
typedef struct grad__pca_fit grad__pca_fit;

grad_status grad__pca_fit_create(int raw_channels, grad__pca_fit **out);
void grad__pca_fit_free(grad__pca_fit *fit);
/* Adds n images of raw_channels x positions. Scratch comes from ws. */
grad_status grad__pca_fit_add(grad__pca_fit *fit, const float *features, int n, size_t positions,
                              grad_workspace *ws);
/*
 * Keeps the top `channels` axes (eigenvectors of the covariance by LAPACK's
 * dsyevd, eigenvalues descending; each axis signed so that its
 * largest-magnitude loading, the first one on ties, is positive). With
 * raw_channels <= channels the result is the identity. GRAD_E_STATE when
 * nothing was added; GRAD_E_NUMERIC for non-finite sums.
 */
grad_status grad__pca_fit_finish(const grad__pca_fit *fit, int channels, grad__pca **out);

/* out (n x C x positions) = P (raw - mean) per position; scratch from ws.
 * raw and out must not overlap. */
grad_status grad__pca_apply(const grad__pca *pca, const float *raw, int n, size_t positions,
                            float *out, grad_workspace *ws);

/* Model files: tensors "reduce.mean" [C_raw] and "reduce.projection"
 * [C, C_raw], metadata "reduce.retained_variance". */
grad_status grad__pca_write(const grad__pca *pca, grad__st_writer *writer);
grad_status grad__pca_read(const grad__st_file *file, grad__pca **out);

#endif
