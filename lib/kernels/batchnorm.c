/* BatchNorm2d: training forward with batch statistics, backward, inference.
 * Per-channel sums are accumulated in double: a channel spans n * H * W
 * values (12544 for a batch of 16 at 28 x 28). */
#include <math.h>

#include "batchnorm.h"

static void affine(const float *x, int n, int channels, size_t plane, const float *scale,
                   const float *shift, bool relu, float *y) {
  for (int i = 0; i < n; i++)
    for (int c = 0; c < channels; c++) {
      size_t base = ((size_t)i * channels + c) * plane;
      float a = scale[c], b = shift[c];
      for (size_t j = 0; j < plane; j++) {
        float v = x[base + j] * a + b;
        y[base + j] = relu && v < 0.0f ? 0.0f : v;
      }
    }
}

void grad__bn_forward_train(const float *x, int n, int channels, size_t plane,
                            const float *gamma, const float *beta, float *running_mean,
                            float *running_var, float *mean, float *invstd, bool relu, float *y) {
  const double count = (double)n * (double)plane;
  for (int c = 0; c < channels; c++) {
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
      const float *p = x + ((size_t)i * channels + c) * plane;
      for (size_t j = 0; j < plane; j++) sum += p[j];
    }
    double mu = sum / count, sq = 0.0;
    for (int i = 0; i < n; i++) {
      const float *p = x + ((size_t)i * channels + c) * plane;
      for (size_t j = 0; j < plane; j++) sq += ((double)p[j] - mu) * ((double)p[j] - mu);
    }
    double var = sq / count;
    mean[c] = (float)mu;
    invstd[c] = (float)(1.0 / sqrt(var + GRAD__BN_EPS));
    running_mean[c] = (float)((1.0 - GRAD__BN_MOMENTUM) * running_mean[c] + GRAD__BN_MOMENTUM * mu);
    running_var[c] = (float)((1.0 - GRAD__BN_MOMENTUM) * running_var[c] +
                             GRAD__BN_MOMENTUM * sq / (count - 1.0));
  }
  grad__bn_apply(x, n, channels, plane, gamma, beta, mean, invstd, relu, y);
}

void grad__bn_apply(const float *x, int n, int channels, size_t plane, const float *gamma,
                    const float *beta, const float *mean, const float *invstd, bool relu,
                    float *y) {
  for (int c = 0; c < channels; c++) {
    float scale = gamma[c] * invstd[c];
    float shift = beta[c] - mean[c] * scale;
    for (int i = 0; i < n; i++) {
      size_t base = ((size_t)i * channels + c) * plane;
      for (size_t j = 0; j < plane; j++) {
        float v = x[base + j] * scale + shift;
        y[base + j] = relu && v < 0.0f ? 0.0f : v;
      }
    }
  }
}

void grad__bn_backward(const float *x, const float *dy, int n, int channels, size_t plane,
                       const float *gamma, const float *mean, const float *invstd, float *dx,
                       float *dgamma, float *dbeta) {
  const double count = (double)n * (double)plane;
  for (int c = 0; c < channels; c++) {
    double sum_dy = 0.0, sum_dy_xhat = 0.0;
    const double mu = mean[c], is = invstd[c];
    for (int i = 0; i < n; i++) {
      size_t base = ((size_t)i * channels + c) * plane;
      for (size_t j = 0; j < plane; j++) {
        double d = dy[base + j];
        sum_dy += d;
        sum_dy_xhat += d * ((double)x[base + j] - mu) * is;
      }
    }
    dgamma[c] += (float)sum_dy_xhat;
    dbeta[c] += (float)sum_dy;
    /* dx = gamma * invstd * (dy - mean(dy) - xhat * mean(dy * xhat)) */
    const double k = gamma[c] * is, mdy = sum_dy / count, mdx = sum_dy_xhat / count;
    for (int i = 0; i < n; i++) {
      size_t base = ((size_t)i * channels + c) * plane;
      for (size_t j = 0; j < plane; j++) {
        double xhat = ((double)x[base + j] - mu) * is;
        dx[base + j] = (float)(k * ((double)dy[base + j] - mdy - xhat * mdx));
      }
    }
  }
}

void grad__bn_forward_eval(const float *x, int n, int channels, size_t plane,
                           const float *gamma, const float *beta, const float *running_mean,
                           const float *running_var, bool relu, float *y) {
  /* Scale and shift per channel, at most a few hundred channels: on the stack. */
  enum { CHUNK = 256 };
  float scale[CHUNK], shift[CHUNK];
  for (int c0 = 0; c0 < channels; c0 += CHUNK) {
    int m = channels - c0 < CHUNK ? channels - c0 : CHUNK;
    for (int c = 0; c < m; c++) {
      float s = gamma[c0 + c] / sqrtf(running_var[c0 + c] + (float)GRAD__BN_EPS);
      scale[c] = s;
      shift[c] = beta[c0 + c] - running_mean[c0 + c] * s;
    }
    for (int i = 0; i < n; i++) {
      size_t offset = ((size_t)i * channels + c0) * plane;
      affine(x + offset, 1, m, plane, scale, shift, relu, y + offset);
    }
  }
}
