/* BatchNorm2d: training forward with batch statistics, backward, inference.
 * Per-channel sums are accumulated in double: a channel spans n * H * W
 * values (12544 for a batch of 16 at 28 x 28). The training passes run over
 * ranges of channels on libgrad's pool, each channel's work the same
 * whatever the split (results do not depend on the thread count), in
 * per-ISA builds (isa_internal.h): the sums go to LANES partial sums in a
 * fixed order, added up in a fixed tree, so they vectorise and round the
 * same in every build. */
#include <grad/common.h> /* grad_kernels_isa */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "batchnorm.h"
#include "hard_swish.h"
#include "isa_internal.h"
#include "lane_sum.h"
#include "threading.h"

enum { LANES = GRAD__LANES };

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

/* Everything one BatchNorm call needs; a part handles channels [c0, c1). */
typedef struct bn_call {
  const float *x, *dy, *mask, *gamma, *beta;
  int n, channels;
  size_t plane;
  float *running_mean, *running_var, *mean, *invstd; /* forward: out; backward: in */
  float *y, *dx, *masked_dy, *dgamma, *dbeta;
  grad__bn_epilogue epilogue;  /* forward */
  grad__bn_prologue prologue;  /* backward */
} bn_call;

/* One plane of y = act(x * scale + shift) (+ res); act and use_res are
 * constants where this is inlined, so each case is its own plain loop. */
INLINE void apply_plane(const float *x, const float *res, float *y, size_t P, float scale,
                        float shift, grad__bn_act act, bool use_res) {
  for (size_t j = 0; j < P; j++) {
    float v = x[j] * scale + shift;
    if (act == GRAD__BN_RELU) v = v < 0.0f ? 0.0f : v;
    if (act == GRAD__BN_HARD_SWISH) v = grad__hard_swish(v);
    if (use_res) v += res[j];
    y[j] = v;
  }
}

INLINE void apply_channel(const bn_call *a, int c, float scale, float shift) {
  const grad__bn_epilogue *e = &a->epilogue;
  const size_t P = a->plane;
  for (int i = 0; i < a->n; i++) {
    const size_t base = ((size_t)i * a->channels + c) * P;
    const float *x = a->x + base, *res = e->residual ? e->residual + base : NULL;
    float *y = a->y + base;
#define APPLY(act, use_res) apply_plane(x, res, y, P, scale, shift, act, use_res)
    if (!res && e->act == GRAD__BN_LINEAR) APPLY(GRAD__BN_LINEAR, false);
    else if (!res && e->act == GRAD__BN_RELU) APPLY(GRAD__BN_RELU, false);
    else if (!res) APPLY(GRAD__BN_HARD_SWISH, false);
    else if (e->act == GRAD__BN_LINEAR) APPLY(GRAD__BN_LINEAR, true);
    else if (e->act == GRAD__BN_RELU) APPLY(GRAD__BN_RELU, true);
    else APPLY(GRAD__BN_HARD_SWISH, true);
#undef APPLY
    /* while the plane is still in cache */
    if (e->plane_means)
      e->plane_means[(size_t)i * a->channels + c] = (float)(grad__lane_sum(y, P) / (double)P);
  }
}

INLINE void apply_body(const bn_call *a, int c0, int c1) {
  for (int c = c0; c < c1; c++) {
    float scale = a->gamma[c] * a->invstd[c];
    float shift = a->beta[c] - a->mean[c] * scale;
    apply_channel(a, c, scale, shift);
  }
}

INLINE void train_body(const bn_call *a, int c0, int c1) {
  const size_t P = a->plane, body = P - P % LANES;
  const double count = (double)a->n * (double)P;
  for (int c = c0; c < c1; c++) {
    double acc[LANES] = {0};
    for (int i = 0; i < a->n; i++) {
      const float *p = a->x + ((size_t)i * a->channels + c) * P;
      for (size_t j = 0; j < body; j += LANES)
        for (int k = 0; k < LANES; k++) acc[k] += p[j + k];
      for (size_t j = body; j < P; j++) acc[j - body] += p[j];
    }
    const double mu = grad__lanes_fold(acc) / count;
    memset(acc, 0, sizeof acc);
    for (int i = 0; i < a->n; i++) {
      const float *p = a->x + ((size_t)i * a->channels + c) * P;
      for (size_t j = 0; j < body; j += LANES)
        for (int k = 0; k < LANES; k++) {
          double d = (double)p[j + k] - mu;
          acc[k] += d * d;
        }
      for (size_t j = body; j < P; j++) acc[j - body] += ((double)p[j] - mu) * ((double)p[j] - mu);
    }
    const double sq = grad__lanes_fold(acc), var = sq / count;
    a->mean[c] = (float)mu;
    a->invstd[c] = (float)(1.0 / sqrt(var + GRAD__BN_EPS));
    a->running_mean[c] =
        (float)((1.0 - GRAD__BN_MOMENTUM) * a->running_mean[c] + GRAD__BN_MOMENTUM * mu);
    a->running_var[c] = (float)((1.0 - GRAD__BN_MOMENTUM) * a->running_var[c] +
                                GRAD__BN_MOMENTUM * sq / (count - 1.0));
    float scale = a->gamma[c] * a->invstd[c];
    if (a->y) apply_channel(a, c, scale, a->beta[c] - a->mean[c] * scale);
  }
}

/* The dy BatchNorm's backward sees at j of a plane (grad__bn_prologue):
 * dy (+ add) (* hard_swish'(x * scale + shift)), and 0 where the mask (a
 * ReLU's output) is not positive (torch's rule). The bools are constants
 * where this is inlined, so each case gets its own branch-free loop. */
typedef struct dy_rule {
  const float *mask;
  float add, scale, shift; /* the plane's broadcast add; bn(x) = x * scale + shift */
} dy_rule;

INLINE float masked(const float *dy, const float *x, const dy_rule *r, bool use_mask,
                    bool use_add, bool use_hs, size_t j) {
  float d = dy[j];
  if (use_add) d += r->add;
  if (use_hs) d *= grad__hard_swish_grad(x[j] * r->scale + r->shift);
  if (!use_mask) return d;
  const float *mask = r->mask;
  /* and-ed with all ones or zeros (+0.0f): no branch, so the loops vectorise */
  uint32_t bits;
  memcpy(&bits, &d, sizeof bits);
  bits &= -(uint32_t)(mask[j] > 0.0f);
  memcpy(&d, &bits, sizeof d);
  return d;
}

/* One image's plane of channel c: the sums of dy and dy * xhat. */
INLINE void backward_sums(const float *x, const float *dy, const dy_rule *r, bool use_mask,
                          bool use_add, bool use_hs, size_t P, double mu, double is,
                          double *s_dy, double *s_dyx) {
  const size_t body = P - P % LANES;
  for (size_t j = 0; j < body; j += LANES)
    for (int k = 0; k < LANES; k++) {
      double d = masked(dy, x, r, use_mask, use_add, use_hs, j + k);
      s_dy[k] += d;
      s_dyx[k] += d * (((double)x[j + k] - mu) * is);
    }
  for (size_t j = body; j < P; j++) {
    double d = masked(dy, x, r, use_mask, use_add, use_hs, j);
    s_dy[j - body] += d;
    s_dyx[j - body] += d * (((double)x[j] - mu) * is);
  }
}

/* One image's plane of channel c: dx, and the masked dy when out is set. */
INLINE void backward_dx(const float *x, const float *dy, const dy_rule *r, bool use_mask,
                        bool use_add, bool use_hs, size_t P, double mu, double is, double k,
                        double mdy, double mdx, float *dx, float *out, bool use_out) {
  for (size_t j = 0; j < P; j++) {
    const float d = masked(dy, x, r, use_mask, use_add, use_hs, j);
    const double xhat = ((double)x[j] - mu) * is;
    if (use_out) out[j] = d;
    dx[j] = (float)(k * ((double)d - mdy - xhat * mdx));
  }
}

/* The (mask, add, hard swish) cases the callers use, each its own loops. */
#define BACKWARD_CASES(fn, ...)                                                 \
  do {                                                                          \
    if (use_mask) fn(__VA_ARGS__, true, false, false);                          \
    else if (use_add && use_hs) fn(__VA_ARGS__, false, true, true);             \
    else if (use_add) fn(__VA_ARGS__, false, true, false);                      \
    else if (use_hs) fn(__VA_ARGS__, false, false, true);                       \
    else fn(__VA_ARGS__, false, false, false);                                  \
  } while (0)
#define SUMS(x, dy, r, m, ad, hs) backward_sums(x, dy, r, m, ad, hs, P, mu, is, s_dy, s_dyx)
#define DX(x, dy, r, dx, m, ad, hs) \
  backward_dx(x, dy, r, m, ad, hs, P, mu, is, k, mdy, mdx, dx, NULL, false)

INLINE void backward_body(const bn_call *a, int c0, int c1) {
  const size_t P = a->plane;
  const double count = (double)a->n * (double)P;
  const bool use_mask = a->mask != NULL, use_out = a->masked_dy != NULL;
  const bool use_add = a->prologue.plane_add != NULL, use_hs = a->prologue.beta != NULL;
  for (int c = c0; c < c1; c++) {
    double s_dy[LANES] = {0}, s_dyx[LANES] = {0};
    const double mu = a->mean[c], is = a->invstd[c];
    dy_rule r = {0};
    if (use_hs) { /* bn(x) exactly as the forward's apply computed it */
      r.scale = a->gamma[c] * a->invstd[c];
      r.shift = a->prologue.beta[c] - a->mean[c] * r.scale;
    }
    for (int i = 0; i < a->n; i++) {
      const size_t base = ((size_t)i * a->channels + c) * P;
      const float *x = a->x + base, *dy = a->dy + base;
      r.mask = use_mask ? a->mask + base : NULL;
      if (use_add) r.add = a->prologue.plane_add[(size_t)i * a->channels + c];
      BACKWARD_CASES(SUMS, x, dy, &r);
    }
    const double sum_dy = grad__lanes_fold(s_dy), sum_dy_xhat = grad__lanes_fold(s_dyx);
    a->dgamma[c] += (float)sum_dy_xhat;
    a->dbeta[c] += (float)sum_dy;
    /* dx = gamma * invstd * (dy - mean(dy) - xhat * mean(dy * xhat)) */
    const double k = a->gamma[c] * is, mdy = sum_dy / count, mdx = sum_dy_xhat / count;
    for (int i = 0; i < a->n; i++) {
      const size_t base = ((size_t)i * a->channels + c) * P;
      const float *x = a->x + base, *dy = a->dy + base;
      float *dx = a->dx + base;
      r.mask = use_mask ? a->mask + base : NULL;
      if (use_add) r.add = a->prologue.plane_add[(size_t)i * a->channels + c];
      if (use_mask && use_out)
        backward_dx(x, dy, &r, true, false, false, P, mu, is, k, mdy, mdx, dx,
                    a->masked_dy + base, true);
      else
        BACKWARD_CASES(DX, x, dy, &r, dx);
    }
  }
}

typedef void (*bn_part_fn)(const bn_call *, int, int);

#define BUILDS(name, body)                                                               \
  static void name##_baseline(const bn_call *a, int c0, int c1) { body(a, c0, c1); }    \
  BUILD_X86(name, body)
#ifdef HAVE_X86_BUILDS
#define BUILD_X86(name, body)                                                             \
  AVX512_TARGET static void name##_avx512(const bn_call *a, int c0, int c1) {             \
    body(a, c0, c1);                                                                      \
  }                                                                                       \
  AVX2_TARGET static void name##_avx2(const bn_call *a, int c0, int c1) { body(a, c0, c1); }
#else
#define BUILD_X86(name, body)
#endif
BUILDS(train, train_body)
BUILDS(apply, apply_body)
BUILDS(backward, backward_body)

static bn_part_fn pick(bn_part_fn baseline, bn_part_fn avx2, bn_part_fn avx512) {
  const int i = grad__isa_level();
  (void)avx2, (void)avx512;
  return i == 2 && avx512 ? avx512 : i == 1 && avx2 ? avx2 : baseline;
}
#ifdef HAVE_X86_BUILDS
#define PICK(name) pick(name##_baseline, name##_avx2, name##_avx512)
#else
#define PICK(name) pick(name##_baseline, NULL, NULL)
#endif

typedef struct job {
  const bn_call *call;
  bn_part_fn fn;
} job;

static void run_part(void *ctx, int part, int parts) {
  const job *j = ctx;
  const int C = j->call->channels;
  j->fn(j->call, (int)((long long)C * part / parts), (int)((long long)C * (part + 1) / parts));
}

/* fn over all channels, split into ranges over the pool. */
static void run(const bn_call *a, bn_part_fn fn) {
  int parts = grad__parallel_width((size_t)a->n * a->channels * a->plane);
  if (parts > a->channels) parts = a->channels;
  job j = {a, fn};
  grad__parallel(parts, run_part, &j);
}

void grad__bn_forward_train_fused(const float *x, int n, int channels, size_t plane,
                                  const float *gamma, const float *beta, float *running_mean,
                                  float *running_var, float *mean, float *invstd,
                                  const grad__bn_epilogue *epilogue, float *y) {
  const bn_call a = {.x = x, .gamma = gamma, .beta = beta, .n = n, .channels = channels,
                     .plane = plane, .running_mean = running_mean, .running_var = running_var,
                     .mean = mean, .invstd = invstd, .y = y, .epilogue = *epilogue};
  run(&a, PICK(train));
}

void grad__bn_forward_train_channels(const float *x, int n, int channels, size_t plane,
                                     const float *gamma, const float *beta,
                                     float *running_mean, float *running_var, float *mean,
                                     float *invstd, const grad__bn_epilogue *epilogue, float *y,
                                     int c0, int c1) {
  const bn_call a = {.x = x, .gamma = gamma, .beta = beta, .n = n, .channels = channels,
                     .plane = plane, .running_mean = running_mean, .running_var = running_var,
                     .mean = mean, .invstd = invstd, .y = y, .epilogue = *epilogue};
  PICK(train)(&a, c0, c1);
}

void grad__bn_backward_channels(const float *x, const float *dy,
                                const grad__bn_prologue *prologue, int n, int channels,
                                size_t plane, const float *gamma, const float *mean,
                                const float *invstd, float *dx, float *dgamma, float *dbeta,
                                int c0, int c1) {
  const bn_call a = {.x = x, .dy = dy, .gamma = gamma, .n = n, .channels = channels,
                     .plane = plane, .mean = (float *)mean, .invstd = (float *)invstd, .dx = dx,
                     .dgamma = dgamma, .dbeta = dbeta, .prologue = *prologue};
  PICK(backward)(&a, c0, c1);
}

void grad__bn_forward_train(const float *x, int n, int channels, size_t plane,
                            const float *gamma, const float *beta, float *running_mean,
                            float *running_var, float *mean, float *invstd, bool relu, float *y) {
  const grad__bn_epilogue e = {relu ? GRAD__BN_RELU : GRAD__BN_LINEAR, NULL, NULL};
  grad__bn_forward_train_fused(x, n, channels, plane, gamma, beta, running_mean, running_var,
                               mean, invstd, &e, y);
}

void grad__bn_apply_fused(const float *x, int n, int channels, size_t plane, const float *gamma,
                          const float *beta, const float *mean, const float *invstd,
                          const grad__bn_epilogue *epilogue, float *y) {
  const bn_call a = {.x = x, .gamma = gamma, .beta = beta, .n = n, .channels = channels,
                     .plane = plane, .mean = (float *)mean, .invstd = (float *)invstd, .y = y,
                     .epilogue = *epilogue};
  run(&a, PICK(apply));
}

void grad__bn_apply(const float *x, int n, int channels, size_t plane, const float *gamma,
                    const float *beta, const float *mean, const float *invstd, bool relu,
                    float *y) {
  const grad__bn_epilogue e = {relu ? GRAD__BN_RELU : GRAD__BN_LINEAR, NULL, NULL};
  grad__bn_apply_fused(x, n, channels, plane, gamma, beta, mean, invstd, &e, y);
}

void grad__bn_backward(const float *x, const float *dy, const float *mask, int n, int channels,
                       size_t plane, const float *gamma, const float *mean, const float *invstd,
                       float *dx, float *masked_dy, float *dgamma, float *dbeta) {
  const bn_call a = {.x = x, .dy = dy, .mask = mask, .gamma = gamma, .n = n,
                     .channels = channels, .plane = plane, .mean = (float *)mean,
                     .invstd = (float *)invstd, .dx = dx, .masked_dy = masked_dy,
                     .dgamma = dgamma, .dbeta = dbeta};
  run(&a, PICK(backward));
}

void grad__bn_backward_fused(const float *x, const float *dy, const grad__bn_prologue *prologue,
                             int n, int channels, size_t plane, const float *gamma,
                             const float *mean, const float *invstd, float *dx, float *dgamma,
                             float *dbeta) {
  const bn_call a = {.x = x, .dy = dy, .gamma = gamma, .n = n, .channels = channels,
                     .plane = plane, .mean = (float *)mean, .invstd = (float *)invstd, .dx = dx,
                     .dgamma = dgamma, .dbeta = dbeta, .prologue = *prologue};
  run(&a, PICK(backward));
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
