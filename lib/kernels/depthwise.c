/* Depthwise convolution, in per-ISA builds (isa_internal.h) that round
 * alike. Main path ("flat"): each plane is copied into a zero-bordered
 * buffer of row stride W = w + 2r on the stack, and every output is the sum
 * of its K x K taps at fixed offsets of the flat index, computed over whole
 * vectors whatever the row width (the columns past w are computed and
 * dropped): no bounds tests, no scalar row ends, everything in L1. The
 * taps are added in the same order as by the row sweeps (the path for
 * planes too large for the buffers), a tap outside the image adding an
 * exact zero, so both give the same values. */
#include <string.h>

#include "batchnorm.h"
#include "conv.h"
#include "depthwise.h"
#include "hard_swish.h"
#include "isa_internal.h"

/* The flat path's row copies are a few dozen floats each: GCC must not
 * turn them into memcpy calls, which cost more than the copies. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-tree-loop-distribute-patterns")
#endif

typedef struct dw_job {
  const float *x, *weight, *dy;
  float *y, *dx, *dweight;
  int n, channels, h, w, kernel;
  bool dx_set;
} dw_job;

/* The output range [lo, hi) along an axis of size `size` for tap offset d
 * (input index = output index + d). */
INLINE void tap_range(int size, int d, int *lo, int *hi) {
  *lo = d < 0 ? -d : 0;
  *hi = d > 0 ? size - d : size;
}

INLINE void forward_plane(const float *x, const float *k, int h, int w, int kernel, float *y) {
  const int r = kernel / 2;
  memset(y, 0, sizeof(float) * (size_t)h * w);
  for (int ky = 0; ky < kernel; ky++)
    for (int kx = 0; kx < kernel; kx++) {
      const float wt = k[ky * kernel + kx];
      int y0, y1, x0, x1;
      tap_range(h, ky - r, &y0, &y1);
      tap_range(w, kx - r, &x0, &x1);
      for (int oy = y0; oy < y1; oy++) {
        const float *in = x + (size_t)(oy + ky - r) * w + (kx - r);
        float *out = y + (size_t)oy * w;
        for (int ox = x0; ox < x1; ox++) out[ox] += wt * in[ox];
      }
    }
}

/* The flat path's buffers: a padded plane of (h + 2r) x W floats plus a
 * vector's slack, on the stack three times (48 KB). */
enum { FLAT_MAX = 4096, FLAT_SLACK = 16, KERNEL_MAX = 7 };

typedef struct flat_geometry {
  int W, r, k;
  size_t size; /* floats of a padded buffer, slack included */
  size_t span; /* outputs computed per plane: h * W rounded up to whole vectors */
  int off[KERNEL_MAX * KERNEL_MAX]; /* tap t's offset in a padded buffer */
} flat_geometry;

/* 0 when the plane does not fit the buffers (the row sweeps then). */
static int flat_setup(int h, int w, int kernel, flat_geometry *g) {
  const int r = kernel / 2, W = w + 2 * r;
  if (kernel > KERNEL_MAX) return 0;
  g->W = W;
  g->r = r;
  g->k = kernel;
  g->span = ((size_t)h * W + FLAT_SLACK - 1) / FLAT_SLACK * FLAT_SLACK;
  g->size = (size_t)(h + 2 * r) * W + 2 * r + FLAT_SLACK;
  if (g->size > FLAT_MAX) return 0;
  for (int t = 0; t < kernel * kernel; t++) g->off[t] = (t / kernel) * W + t % kernel;
  return 1;
}

/* pad = the plane with a zero border of r on every side (and zero slack). */
INLINE void pad_plane(const flat_geometry *g, const float *src, int h, int w, float *pad) {
  memset(pad, 0, sizeof(float) * g->size);
  for (int y = 0; y < h; y++) { /* rows of a few dozen floats: a loop, not a call */
    float *restrict to = pad + (size_t)(y + g->r) * g->W + g->r;
    const float *restrict from = src + (size_t)y * w;
    for (int x = 0; x < w; x++) to[x] = from[x];
  }
}

/* pad = hswish(plane * scale + shift) with a zero border: CRAD's bn1 and
 * hard-swish (grad__bn_apply_fused's values) on the way in. */
INLINE void pad_plane_act(const flat_geometry *g, const float *src, int h, int w, float scale,
                          float shift, float *pad) {
  memset(pad, 0, sizeof(float) * g->size);
  for (int y = 0; y < h; y++) {
    float *restrict to = pad + (size_t)(y + g->r) * g->W + g->r;
    const float *restrict from = src + (size_t)y * w;
    for (int x = 0; x < w; x++) to[x] = grad__hard_swish(from[x] * scale + shift);
  }
}

/* out[q] += sum over taps t of wt[t] * in[q + off[t]] for q in [0, span), the
 * taps in order; K is a constant where inlined, so the taps unroll. */
INLINE void flat_taps(const float *restrict in, const int *off, const float *wt, int K,
                      size_t span, float *restrict out) {
  float wv[KERNEL_MAX * KERNEL_MAX];
  int o[KERNEL_MAX * KERNEL_MAX];
  for (int t = 0; t < K * K; t++) wv[t] = wt[t], o[t] = off[t];
  for (size_t q = 0; q < span; q++) {
    float a = out[q];
    for (int t = 0; t < K * K; t++) a += wv[t] * in[q + o[t]];
    out[q] = a;
  }
}

/* dW[t] (in double) += sum over q in [0, span) of dyw[q] * in[q + off[t]], in
 * GRAD__LANES float lanes per tap folded in double. */
INLINE void flat_weight_grad(const float *restrict dyw, const float *restrict in,
                             const int *off, int K, size_t span, double *dw) {
  enum { L = 16 };
  for (int t = 0; t < K * K; t++) { /* a sweep per tap over the plane in L1 */
    const float *restrict shifted = in + off[t];
    float acc[L] = {0};
    for (size_t q = 0; q < span; q += L)
      for (int k = 0; k < L; k++) acc[k] += dyw[q + k] * shifted[q + k];
    double sum = 0.0;
    for (int k = 0; k < L; k++) sum += acc[k];
    dw[t] += sum;
  }
}

/* Copies the first w of each row of stride W in flat into the plane. */
INLINE void unpad_rows(const float *flat, int W, int h, int w, float *plane) {
  for (int y = 0; y < h; y++) {
    float *restrict to = plane + (size_t)y * w;
    const float *restrict from = flat + (size_t)y * W;
    for (int x = 0; x < w; x++) to[x] = from[x];
  }
}

/* Parts split the channels: each weight's gradient is then summed by one part. */
INLINE void channel_span(const dw_job *j, int part, int parts, int *c0, int *c1) {
  *c0 = (int)((long long)j->channels * part / parts);
  *c1 = (int)((long long)j->channels * (part + 1) / parts);
}

INLINE void forward_body(void *ctx, int part, int parts) {
  const dw_job *j = ctx;
  const size_t plane = (size_t)j->h * j->w;
  const int kk = j->kernel * j->kernel;
  int c0, c1;
  channel_span(j, part, parts, &c0, &c1);
  flat_geometry g;
  float pad[FLAT_MAX], out[FLAT_MAX];
  const int flat = flat_setup(j->h, j->w, j->kernel, &g);
  for (int i = 0; i < j->n; i++)
    for (int c = c0; c < c1; c++) {
      const size_t at = ((size_t)i * j->channels + c) * plane;
      const float *wc = j->weight + (size_t)c * kk;
      if (!flat) {
        forward_plane(j->x + at, wc, j->h, j->w, j->kernel, j->y + at);
        continue;
      }
      pad_plane(&g, j->x + at, j->h, j->w, pad);
      memset(out, 0, sizeof(float) * g.span);
      if (j->kernel == 3) flat_taps(pad, g.off, wc, 3, g.span, out);
      else flat_taps(pad, g.off, wc, j->kernel, g.span, out);
      unpad_rows(out, g.W, j->h, j->w, j->y + at);
    }
}

GRAD_PART_BUILDS(forward_part, forward_body)

void grad__depthwise_conv2d(const float *x, const float *weight, int n, int channels, int h,
                            int w, int kernel, float *y) {
  dw_job job = {x, weight, NULL, y, NULL, NULL, n, channels, h, w, kernel, false};
  int parts = grad__parallel_width((size_t)n * channels * h * w * kernel);
  grad__parallel(parts < channels ? parts : channels, forward_part_pick(), &job);
}

/* Columns a weight gradient's partial sums cover at once (on the stack). */
enum { GRAD_COLUMNS = 64 };

/* d weight of one tap over one plane: per column over the rows (a loop the
 * compiler vectorises), then the columns in double. */
INLINE double tap_weight_grad(const float *x, const float *dy, int w, int y0, int y1, int x0,
                              int x1, int dy_off, int dx_off) {
  double sum = 0.0;
  for (int cx = x0; cx < x1; cx += GRAD_COLUMNS) {
    const int count = x1 - cx < GRAD_COLUMNS ? x1 - cx : GRAD_COLUMNS;
    float column[GRAD_COLUMNS] = {0};
    for (int oy = y0; oy < y1; oy++) {
      const float *g = dy + (size_t)oy * w + cx;
      const float *in = x + (size_t)(oy + dy_off) * w + cx + dx_off;
      for (int t = 0; t < count; t++) column[t] += g[t] * in[t];
    }
    for (int t = 0; t < count; t++) sum += column[t];
  }
  return sum;
}

/* Taps whose weight-gradient sums one sweep over the images holds. */
enum { TAPS_AT_ONCE = 64 };

/* Image by image, all taps of a plane while it is in L1 (a sweep per tap
 * over all images would stream them from L2 once per tap); each tap's sum
 * still adds the images in order, each dx plane the taps in order. */
/* The flat path of one channel: per image, dy padded once serves both the
 * data gradient (the taps mirrored: dx[p] gets w[t] * dy[p - (off[t] -
 * r W - r)]) and the weight gradient (dy's rows at stride W, their pad
 * columns zero, against x padded); each weight's sum adds the images in
 * order, in double. */
INLINE void backward_flat(const dw_job *j, const flat_geometry *g, int c, bool act, float scale,
                          float shift) {
  const size_t plane = (size_t)j->h * j->w;
  const int K = j->kernel, kk = K * K, W = g->W, r = g->r;
  const float *k = j->weight + (size_t)c * kk;
  float dypad[FLAT_MAX], xpad[FLAT_MAX], out[FLAT_MAX];
  float mirrored[KERNEL_MAX * KERNEL_MAX];
  int moff[KERNEL_MAX * KERNEL_MAX];
  /* dx[q] = sum over taps t, in order, of w[t] * dypad[q + 2r W + 2r - off[t]] */
  for (int t = 0; t < kk; t++) mirrored[t] = k[t], moff[t] = 2 * r * W + 2 * r - g->off[t];
  double dw[KERNEL_MAX * KERNEL_MAX] = {0};
  for (int i = 0; i < j->n; i++) {
    const size_t at = ((size_t)i * j->channels + c) * plane;
    pad_plane(g, j->dy + at, j->h, j->w, dypad);
    if (j->dweight) {
      if (act) pad_plane_act(g, j->x + at, j->h, j->w, scale, shift, xpad);
      else pad_plane(g, j->x + at, j->h, j->w, xpad);
      const float *dyw = dypad + (size_t)r * W + r;
      if (K == 3) flat_weight_grad(dyw, xpad, g->off, 3, g->span, dw);
      else flat_weight_grad(dyw, xpad, g->off, K, g->span, dw);
    }
    if (!j->dx) continue;
    float *dx = j->dx + at;
    memset(out, 0, sizeof(float) * g->span);
    if (!j->dx_set)
      for (int y = 0; y < j->h; y++)
        for (int x = 0; x < j->w; x++) out[(size_t)y * W + x] = dx[(size_t)y * j->w + x];
    if (K == 3) flat_taps(dypad, moff, mirrored, 3, g->span, out);
    else flat_taps(dypad, moff, mirrored, K, g->span, out);
    unpad_rows(out, W, j->h, j->w, dx);
  }
  if (j->dweight)
    for (int t = 0; t < kk; t++) j->dweight[(size_t)c * kk + t] += (float)dw[t];
}

INLINE void backward_body(void *ctx, int part, int parts) {
  const dw_job *j = ctx;
  const size_t plane = (size_t)j->h * j->w;
  const int kernel = j->kernel, kk = kernel * kernel, r = kernel / 2, w = j->w;
  int c0, c1;
  channel_span(j, part, parts, &c0, &c1);
  flat_geometry geo;
  if (flat_setup(j->h, w, kernel, &geo)) {
    for (int c = c0; c < c1; c++) backward_flat(j, &geo, c, false, 0.0f, 0.0f);
    return;
  }
  for (int c = c0; c < c1; c++) {
    const float *k = j->weight + (size_t)c * kk;
    for (int t0 = 0; t0 < kk; t0 += TAPS_AT_ONCE) {
      const int t1 = kk - t0 < TAPS_AT_ONCE ? kk : t0 + TAPS_AT_ONCE;
      double sum[TAPS_AT_ONCE] = {0};
      for (int i = 0; i < j->n; i++) {
        const size_t at = ((size_t)i * j->channels + c) * plane;
        if (j->dx && j->dx_set && t0 == 0) memset(j->dx + at, 0, sizeof(float) * plane);
        for (int t = t0; t < t1; t++) {
          const int ky = t / kernel, kx = t % kernel;
          const float wt = k[t];
          int y0, y1, x0, x1;
          tap_range(j->h, ky - r, &y0, &y1);
          tap_range(w, kx - r, &x0, &x1);
          if (j->dweight)
            sum[t - t0] +=
                tap_weight_grad(j->x + at, j->dy + at, w, y0, y1, x0, x1, ky - r, kx - r);
          if (!j->dx) continue;
          for (int oy = y0; oy < y1; oy++) {
            const float *g = j->dy + at + (size_t)oy * w;
            float *d = j->dx + at + (size_t)(oy + ky - r) * w + (kx - r);
            for (int ox = x0; ox < x1; ox++) d[ox] += wt * g[ox];
          }
        }
      }
      if (j->dweight)
        for (int t = t0; t < t1; t++) j->dweight[(size_t)c * kk + t] += (float)sum[t - t0];
    }
  }
}

GRAD_PART_BUILDS(backward_part, backward_body)

void grad__depthwise_conv2d_backward(const float *x, const float *weight, const float *dy,
                                     int n, int channels, int h, int w, int kernel, float *dx,
                                     bool dx_set, float *dweight) {
  dw_job job = {x, weight, dy, NULL, dx, dweight, n, channels, h, w, kernel, dx_set};
  int parts = grad__parallel_width((size_t)n * channels * h * w * kernel);
  grad__parallel(parts < channels ? parts : channels, backward_part_pick(), &job);
}

/* ---- CRAD's depthwise stage with its BatchNorms, channel by channel ---- */

INLINE void stage_span(const grad__dw_stage *s, int part, int parts, int *c0, int *c1) {
  *c0 = (int)((long long)s->channels * part / parts);
  *c1 = (int)((long long)s->channels * (part + 1) / parts);
}

/* bn(x) = x * scale + shift with the batch statistics, as BatchNorm's apply. */
INLINE void bn_affine(const grad__dw_bn *bn, int c, float *scale, float *shift) {
  *scale = bn->gamma[c] * bn->invstd[c];
  *shift = bn->beta[c] - bn->mean[c] * *scale;
}

INLINE void stage_forward_body(void *ctx, int part, int parts) {
  const grad__dw_stage *s = ctx;
  const grad__dw_bn *b1 = &s->bn1, *b2 = &s->bn2;
  const size_t P = (size_t)s->h * s->w;
  const int kk = s->kernel * s->kernel;
  const grad__bn_epilogue stats = {GRAD__BN_LINEAR, NULL, NULL},
                          means = {GRAD__BN_LINEAR, NULL, s->plane_means};
  int c0, c1;
  stage_span(s, part, parts, &c0, &c1);
  flat_geometry g;
  flat_setup(s->h, s->w, s->kernel, &g); /* the caller checked that it fits */
  float pad[FLAT_MAX], out[FLAT_MAX];
  for (int c = c0; c < c1; c++) {
    grad__bn_forward_train_channels(s->conv1, s->n, s->channels, P, b1->gamma, b1->beta,
                                    b1->running_mean, b1->running_var, b1->mean, b1->invstd,
                                    &stats, NULL, c, c + 1);
    float scale, shift;
    bn_affine(b1, c, &scale, &shift);
    const float *wc = s->weight + (size_t)c * kk;
    for (int i = 0; i < s->n; i++) { /* the channel's conv1 planes are in cache now */
      const size_t at = ((size_t)i * s->channels + c) * P;
      pad_plane_act(&g, s->conv1 + at, s->h, s->w, scale, shift, pad);
      memset(out, 0, sizeof(float) * g.span);
      if (s->kernel == 3) flat_taps(pad, g.off, wc, 3, g.span, out);
      else flat_taps(pad, g.off, wc, s->kernel, g.span, out);
      unpad_rows(out, g.W, s->h, s->w, s->conv2 + at);
    }
    grad__bn_forward_train_channels(s->conv2, s->n, s->channels, P, b2->gamma, b2->beta,
                                    b2->running_mean, b2->running_var, b2->mean, b2->invstd,
                                    &means, s->e2, c, c + 1);
  }
}

GRAD_PART_BUILDS(stage_forward_part, stage_forward_body)

INLINE void stage_backward_body(void *ctx, int part, int parts) {
  const grad__dw_stage *s = ctx;
  const grad__dw_bn *b1 = &s->bn1, *b2 = &s->bn2;
  const size_t P = (size_t)s->h * s->w;
  const grad__bn_prologue mean_grad = {s->plane_add, NULL}, hswish_grad = {NULL, b1->beta};
  const dw_job j = {s->conv1, s->weight, s->d2, NULL, s->d1, s->dweight,
                    s->n, s->channels, s->h, s->w, s->kernel, true};
  int c0, c1;
  stage_span(s, part, parts, &c0, &c1);
  flat_geometry g;
  flat_setup(s->h, s->w, s->kernel, &g);
  for (int c = c0; c < c1; c++) {
    grad__bn_backward_channels(s->conv2, s->d2, &mean_grad, s->n, s->channels, P, b2->gamma,
                               b2->mean, b2->invstd, s->d2, b2->dgamma, b2->dbeta, c, c + 1);
    float scale, shift;
    bn_affine(b1, c, &scale, &shift);
    backward_flat(&j, &g, c, true, scale, shift); /* its input: hswish(bn1(conv1)) */
    grad__bn_backward_channels(s->conv1, s->d1, &hswish_grad, s->n, s->channels, P, b1->gamma,
                               b1->mean, b1->invstd, s->d1, b1->dgamma, b1->dbeta, c, c + 1);
  }
}

GRAD_PART_BUILDS(stage_backward_part, stage_backward_body)

static int stage_parts(const grad__dw_stage *s) {
  int parts = grad__parallel_width((size_t)s->n * s->channels * s->h * s->w * s->kernel);
  return parts < s->channels ? parts : s->channels;
}

void grad__dw_stage_forward(const grad__dw_stage *s) {
  flat_geometry g;
  if (flat_setup(s->h, s->w, s->kernel, &g)) {
    grad__parallel(stage_parts(s), stage_forward_part_pick(), (void *)s);
    return;
  }
  const size_t P = (size_t)s->h * s->w;
  const grad__dw_bn *b1 = &s->bn1, *b2 = &s->bn2;
  const grad__bn_epilogue hswish = {GRAD__BN_HARD_SWISH, NULL, NULL},
                          means = {GRAD__BN_LINEAR, NULL, s->plane_means};
  grad__bn_forward_train_fused(s->conv1, s->n, s->channels, P, b1->gamma, b1->beta,
                               b1->running_mean, b1->running_var, b1->mean, b1->invstd, &hswish,
                               s->scratch);
  grad__depthwise_conv2d(s->scratch, s->weight, s->n, s->channels, s->h, s->w, s->kernel,
                         s->conv2);
  grad__bn_forward_train_fused(s->conv2, s->n, s->channels, P, b2->gamma, b2->beta,
                               b2->running_mean, b2->running_var, b2->mean, b2->invstd, &means,
                               s->e2);
}

void grad__dw_stage_backward(const grad__dw_stage *s) {
  flat_geometry g;
  if (flat_setup(s->h, s->w, s->kernel, &g)) {
    grad__parallel(stage_parts(s), stage_backward_part_pick(), (void *)s);
    return;
  }
  const size_t P = (size_t)s->h * s->w;
  const grad__dw_bn *b1 = &s->bn1, *b2 = &s->bn2;
  const grad__bn_prologue mean_grad = {s->plane_add, NULL}, hswish_grad = {NULL, b1->beta};
  const grad__bn_epilogue hswish = {GRAD__BN_HARD_SWISH, NULL, NULL};
  grad__bn_backward_fused(s->conv2, s->d2, &mean_grad, s->n, s->channels, P, b2->gamma, b2->mean,
                          b2->invstd, s->d2, b2->dgamma, b2->dbeta);
  grad__bn_apply_fused(s->conv1, s->n, s->channels, P, b1->gamma, b1->beta, b1->mean,
                       b1->invstd, &hswish, s->scratch);
  grad__depthwise_conv2d_backward(s->scratch, s->weight, s->d2, s->n, s->channels, s->h, s->w,
                                  s->kernel, s->d1, true, s->dweight);
  grad__bn_backward_fused(s->conv1, s->d1, &hswish_grad, s->n, s->channels, P, b1->gamma,
                          b1->mean, b1->invstd, s->d1, b1->dgamma, b1->dbeta);
}
