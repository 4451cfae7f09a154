/*
 * The CRAD decoder's block (docs/store.md): a MobileNetV3 bottleneck at 2C
 * channels, as the official CRAD code's MobileBottleneck(2C, 2C, 3, 1, E,
 * se=True, "HS"):
 *   1x1 expand 2C -> E, BN, hard-swish;
 *   depthwise 3x3, BN, squeeze-and-excitation, hard-swish;
 *   1x1 project E -> 2C, BN; plus the block input (no activation after).
 * SE: m * hsigmoid(W2 relu(W1 mean_p m)), W1: E/4 x E, W2: E x E/4, no bias.
 * Forward for inference and training, and the backward pass.
 */
#include <string.h>

#include "batchnorm.h"
#include "conv.h"
#include "conv_backward.h"
#include "depthwise.h"
#include "hard_swish.h"
#include "isa_internal.h"
#include "lane_sum.h"
#include "store_impl.h"

/*
 * The block's passes between its convolutions that BatchNorm does not take
 * (batchnorm.h's fused forms take the others), on the pool: each part
 * takes whole planes (one image's channel), so per-plane sums come out the
 * same on any number of threads. The training passes read the depthwise
 * output a = conv2 and recompute b2 = bn2(a) from the batch statistics
 * (bn), as BatchNorm's apply does, instead of keeping b2.
 */
typedef enum pass {
  PLANE_MEAN,      /* sum = mean(a) */
  HARD_SWISH,      /* a = hswish(a) */
  RESIDUAL,        /* a += b */
  GATE_HARD_SWISH, /* a = hswish(a * hsigmoid(gate)) */
  GATE_RECOMPUTE,  /* c = hswish(bn(a) * hsigmoid(gate)) */
  GATE_BACKWARD    /* c *= hswish'(bn(a) * g), sum = sum(c * bn(a)), c *= g; g = hsigmoid(gate) */
} pass;

/* BatchNorm with batch statistics, for the passes that recompute it. */
typedef struct pass_bn {
  const float *gamma, *beta, *mean, *invstd;
  int channels; /* plane q is channel q % channels */
} pass_bn;

typedef struct pass_job {
  pass kind;
  size_t planes, P;
  float *a, *b, *c;
  const float *gate; /* per plane */
  float *sums;       /* per plane */
  pass_bn bn;
} pass_job;

INLINE void pass_body(void *ctx, int part, int parts) {
  const pass_job *j = ctx;
  const size_t first = j->planes * (size_t)part / (size_t)parts,
               end = j->planes * (size_t)(part + 1) / (size_t)parts, P = j->P;
  for (size_t q = first; q < end; q++) {
    float *a = j->a ? j->a + q * P : NULL, *b = j->b ? j->b + q * P : NULL,
          *c = j->c ? j->c + q * P : NULL;
    const float g = j->gate ? grad__hard_sigmoid(j->gate[q]) : 0.0f;
    float scale = 0.0f, shift = 0.0f; /* bn(a) = a * scale + shift, as grad__bn_apply */
    if (j->bn.gamma) {
      const size_t ch = q % (size_t)j->bn.channels;
      scale = j->bn.gamma[ch] * j->bn.invstd[ch];
      shift = j->bn.beta[ch] - j->bn.mean[ch] * scale;
    }
    switch (j->kind) {
    case PLANE_MEAN:
      j->sums[q] = (float)(grad__lane_sum(a, P) / (double)P);
      break;
    case HARD_SWISH:
      for (size_t t = 0; t < P; t++) a[t] = grad__hard_swish(a[t]);
      break;
    case RESIDUAL:
      for (size_t t = 0; t < P; t++) a[t] += b[t];
      break;
    case GATE_HARD_SWISH:
      for (size_t t = 0; t < P; t++) a[t] = grad__hard_swish(a[t] * g);
      break;
    case GATE_RECOMPUTE:
      for (size_t t = 0; t < P; t++) c[t] = grad__hard_swish((a[t] * scale + shift) * g);
      break;
    case GATE_BACKWARD: { /* the sum in lanes, as grad__lane_sum */
      double acc[GRAD__LANES] = {0};
      const size_t body = P - P % GRAD__LANES;
      for (size_t t0 = 0; t0 < P; t0 += GRAD__LANES) {
        const int lanes = t0 < body ? GRAD__LANES : (int)(P - body);
        for (int k = 0; k < lanes; k++) {
          const float b2 = a[t0 + k] * scale + shift;
          const float d = c[t0 + k] * grad__hard_swish_grad(b2 * g);
          acc[k] += (double)d * b2;
          c[t0 + k] = d * g;
        }
      }
      j->sums[q] = (float)grad__lanes_fold(acc);
      break;
    }
    }
  }
}

GRAD_PART_BUILDS(pass_part, pass_body)

static void run_pass_bn(pass kind, size_t planes, size_t P, float *a, float *b, float *c,
                        const float *gate, float *sums, const pass_bn *bn) {
  pass_job j = {kind, planes, P, a, b, c, gate, sums, {0}};
  if (bn) j.bn = *bn;
  int parts = grad__parallel_width(planes * P);
  if ((size_t)parts > planes) parts = (int)planes;
  grad__parallel(parts, pass_part_pick(), &j);
}

static void run_pass(pass kind, size_t planes, size_t P, float *a, float *b, float *c,
                     const float *gate, float *sums) {
  run_pass_bn(kind, planes, P, a, b, c, gate, sums, NULL);
}

/* Block b's sizes. */
typedef struct crad_dims {
  int n, C2, E, R, h, w;
  size_t P, emap; /* emap: floats of one n x E x P map */
} crad_dims;

static crad_dims dims_of(const grad_store *s, int n) {
  const grad__store_config *c = &s->config;
  crad_dims d = {n, 2 * c->channels, c->expansion, c->expansion / CRAD_SE_REDUCTION,
                 c->height, c->width, 0, 0};
  d.P = (size_t)d.h * d.w;
  d.emap = (size_t)n * d.E * d.P;
  return d;
}

/*
 * Squeeze-and-excitation on m (n x E x P) and the hard-swish after it, in
 * place, given pooled (n x E), the mean of each plane of m. hidden (n x R,
 * after the ReLU) and gate (n x E, before the hard sigmoid) receive what
 * the backward needs.
 */
static void se_hard_swish(const grad_store *s, int b, const crad_dims *k, float *m,
                          const float *pooled, float *hidden, float *gate) {
  const float *W1 = store__bw(s, b, CRAD_SE_REDUCE), *W2 = store__bw(s, b, CRAD_SE_EXPAND);
  const int E = k->E, R = k->R;
  for (int i = 0; i < k->n; i++) {
    const float *p = pooled + (size_t)i * E;
    float *z = hidden + (size_t)i * R, *u = gate + (size_t)i * E;
    for (int r = 0; r < R; r++) {
      double acc = 0.0;
      for (int e = 0; e < E; e++) acc += (double)W1[(size_t)r * E + e] * p[e];
      z[r] = acc > 0.0 ? (float)acc : 0.0f;
    }
    for (int e = 0; e < E; e++) {
      double acc = 0.0;
      for (int r = 0; r < R; r++) acc += (double)W2[(size_t)e * R + r] * z[r];
      u[e] = (float)acc;
    }
  }
  /* m * hsigmoid(gate), and the block's hard-swish after it, in one pass. */
  run_pass(GATE_HARD_SWISH, (size_t)k->n * E, k->P, m, NULL, NULL, gate, NULL);
}

grad_status grad__crad_block_eval(const grad_store *s, int b, float *x, int n, float *scratch,
                                  float *se_scratch, grad_workspace *ws) {
  const crad_dims k = dims_of(s, n);
  const grad__conv expand = {k.C2, k.E, 1, 1, 0}, project = {k.E, k.C2, 1, 1, 0};
  float *e1 = scratch, *e2 = scratch + k.emap, *t = e2 + k.emap;
  grad_status st = grad__conv2d(&expand, store__bw(s, b, CRAD_EXPAND), NULL, false, x, n, k.h,
                                k.w, e1, ws);
  if (st != GRAD_OK) return st;
  grad__bn_forward_eval(e1, n, k.E, k.P, store__bw(s, b, CRAD_BN1_W), store__bw(s, b, CRAD_BN1_B),
                        store__b(s, b, CRAD_BN1_MEAN), store__b(s, b, CRAD_BN1_VAR), false, e1);
  run_pass(HARD_SWISH, (size_t)n * k.E, k.P, e1, NULL, NULL, NULL, NULL);
  grad__depthwise_conv2d(e1, store__bw(s, b, CRAD_DEPTHWISE), n, k.E, k.h, k.w, 3, e2);
  grad__bn_forward_eval(e2, n, k.E, k.P, store__bw(s, b, CRAD_BN2_W), store__bw(s, b, CRAD_BN2_B),
                        store__b(s, b, CRAD_BN2_MEAN), store__b(s, b, CRAD_BN2_VAR), false, e2);
  float *pooled = se_scratch, *hidden = pooled + (size_t)n * k.E, *gate = hidden + (size_t)n * k.R;
  run_pass(PLANE_MEAN, (size_t)n * k.E, k.P, e2, NULL, NULL, NULL, pooled);
  se_hard_swish(s, b, &k, e2, pooled, hidden, gate);
  st = grad__conv2d(&project, store__bw(s, b, CRAD_PROJECT), NULL, false, e2, n, k.h, k.w, t, ws);
  if (st != GRAD_OK) return st;
  grad__bn_forward_eval(t, n, k.C2, k.P, store__bw(s, b, CRAD_BN3_W), store__bw(s, b, CRAD_BN3_B),
                        store__b(s, b, CRAD_BN3_MEAN), store__b(s, b, CRAD_BN3_VAR), false, t);
  run_pass(RESIDUAL, (size_t)n * k.C2, k.P, x, t, NULL, NULL, NULL);
  return GRAD_OK;
}

/* The block's batch statistics (mean, invstd of bn1, bn2, bn3) and SE values. */
typedef struct crad_tape {
  float *mean1, *invstd1, *mean2, *invstd2, *mean3, *invstd3;
  float *pooled, *hidden, *gate;
} crad_tape;

static crad_tape tape_of(const grad__store_tape *t, int b, const crad_dims *k) {
  float *st = t->stats + (size_t)b * t->stats_per_block;
  float *se = t->se + (size_t)b * t->se_per_block;
  crad_tape c = {st, st + k->E, st + 2 * k->E, st + 3 * k->E, st + 4 * k->E,
                 st + 4 * k->E + k->C2, se, se + (size_t)k->n * k->E,
                 se + (size_t)k->n * (k->E + k->R)};
  return c;
}

/* Block b's depthwise stage (depthwise.h) over the tape's maps; e2, d2 and
 * d1 are the caller's to set, scratch serves only planes too large for the
 * fused path. */
static grad__dw_stage dw_stage(grad_store *s, const grad__store_tape *t, int b,
                               const crad_dims *k, const crad_tape *c) {
  grad__dw_stage st = {
      .n = k->n, .channels = k->E, .h = k->h, .w = k->w, .kernel = 3,
      .weight = store__bw(s, b, CRAD_DEPTHWISE), .dweight = store__bg(s, b, CRAD_DEPTHWISE),
      .bn1 = {store__bw(s, b, CRAD_BN1_W), store__bw(s, b, CRAD_BN1_B),
              store__b(s, b, CRAD_BN1_MEAN), store__b(s, b, CRAD_BN1_VAR), c->mean1, c->invstd1,
              store__bg(s, b, CRAD_BN1_W), store__bg(s, b, CRAD_BN1_B)},
      .bn2 = {store__bw(s, b, CRAD_BN2_W), store__bw(s, b, CRAD_BN2_B),
              store__b(s, b, CRAD_BN2_MEAN), store__b(s, b, CRAD_BN2_VAR), c->mean2, c->invstd2,
              store__bg(s, b, CRAD_BN2_W), store__bg(s, b, CRAD_BN2_B)},
      .conv1 = t->conv1[b], .conv2 = t->conv2[b], .plane_means = c->pooled};
  return st;
}

grad_status grad__crad_block_train(grad_store *s, grad__store_tape *t, int b, float *scratch,
                                   grad_workspace *ws) {
  const int n = t->n;
  const crad_dims k = dims_of(s, n);
  const crad_tape c = tape_of(t, b, &k);
  const grad__conv expand = {k.C2, k.E, 1, 1, 0}, project = {k.E, k.C2, 1, 1, 0};
  float *e2 = scratch, *spare = scratch + k.emap;
  grad_status st = grad__store_conv_forward(s, &expand, store__bw(s, b, CRAD_EXPAND), NULL,
                                            t->act[b], n, t->conv1[b], ws);
  if (st != GRAD_OK) return st;
  /* bn1, hard-swish, depthwise, bn2 and SE's means channel by channel
   * (depthwise.h); BatchNorm takes the residual after bn3. */
  grad__dw_stage stage = dw_stage(s, t, b, &k, &c);
  stage.e2 = e2;
  stage.scratch = spare;
  grad__dw_stage_forward(&stage);
  const grad__bn_epilogue residual = {GRAD__BN_LINEAR, t->act[b], NULL};
  se_hard_swish(s, b, &k, e2, c.pooled, c.hidden, c.gate);
  st = grad__store_conv_forward(s, &project, store__bw(s, b, CRAD_PROJECT), NULL, e2, n,
                                t->conv3[b], ws);
  if (st != GRAD_OK) return st;
  grad__bn_forward_train_fused(t->conv3[b], n, k.C2, k.P, store__bw(s, b, CRAD_BN3_W),
                               store__bw(s, b, CRAD_BN3_B), store__b(s, b, CRAD_BN3_MEAN),
                               store__b(s, b, CRAD_BN3_VAR), c.mean3, c.invstd3, &residual,
                               t->act[b + 1]);
  return GRAD_OK;
}

/*
 * SE backward for all images: dgate_out (n x E) is dL/d(hsigmoid output);
 * accumulates into SE's two weight gradients and writes dL/dpooled to
 * dpooled (n x E). dz is n x R scratch.
 */
static void se_backward(grad_store *s, int b, const crad_dims *k, const crad_tape *c,
                        float *dgate_out, float *dpooled, float *dz) {
  const float *W1 = store__bw(s, b, CRAD_SE_REDUCE), *W2 = store__bw(s, b, CRAD_SE_EXPAND);
  float *dW1 = store__bg(s, b, CRAD_SE_REDUCE), *dW2 = store__bg(s, b, CRAD_SE_EXPAND);
  const int E = k->E, R = k->R;
  for (int i = 0; i < k->n; i++) {
    float *du = dgate_out + (size_t)i * E, *dzi = dz + (size_t)i * R;
    const float *u = c->gate + (size_t)i * E, *z = c->hidden + (size_t)i * R;
    const float *p = c->pooled + (size_t)i * E;
    for (int e = 0; e < E; e++) du[e] = u[e] > -3.0f && u[e] < 3.0f ? du[e] / 6.0f : 0.0f;
    for (int r = 0; r < R; r++) dzi[r] = 0.0f;
    for (int e = 0; e < E; e++) {
      const float *w2 = W2 + (size_t)e * R;
      float *dw2 = dW2 + (size_t)e * R;
      for (int r = 0; r < R; r++) {
        dw2[r] += du[e] * z[r];
        dzi[r] += w2[r] * du[e];
      }
    }
    for (int r = 0; r < R; r++)
      if (!(z[r] > 0.0f)) dzi[r] = 0.0f;
    float *dp = dpooled + (size_t)i * E;
    for (int e = 0; e < E; e++) dp[e] = 0.0f;
    for (int r = 0; r < R; r++) {
      const float *w1 = W1 + (size_t)r * E;
      float *dw1 = dW1 + (size_t)r * E;
      for (int e = 0; e < E; e++) {
        dw1[e] += dzi[r] * p[e];
        dp[e] += w1[e] * dzi[r];
      }
    }
  }
}

grad_status grad__crad_block_backward(grad_store *s, const grad__store_tape *t, int b, float *d,
                                      float *tmp, float *emaps, float *se_scratch,
                                      grad_workspace *ws) {
  const int n = t->n;
  const crad_dims k = dims_of(s, n);
  const crad_tape c = tape_of(t, b, &k);
  const grad__conv expand = {k.C2, k.E, 1, 1, 0}, project = {k.E, k.C2, 1, 1, 0};
  float *B = emaps + k.emap, *Cm = B + k.emap, *D = Cm + k.emap;
  float *dgate = se_scratch, *dpooled = dgate + (size_t)n * k.E, *dz = dpooled + (size_t)n * k.E;

  /* Projection: d (dL/d output) reaches the input unchanged by the residual. */
  grad__bn_backward(t->conv3[b], d, NULL, n, k.C2, k.P, store__bw(s, b, CRAD_BN3_W), c.mean3,
                    c.invstd3, tmp, NULL, store__bg(s, b, CRAD_BN3_W), store__bg(s, b, CRAD_BN3_B));
  /* Recompute a2 = hswish(bn2(conv2) * hsigmoid(gate)) in Cm. */
  const size_t planes = (size_t)n * k.E;
  const pass_bn bn2 = {store__bw(s, b, CRAD_BN2_W), store__bw(s, b, CRAD_BN2_B), c.mean2,
                       c.invstd2, k.E};
  run_pass_bn(GATE_RECOMPUTE, planes, k.P, t->conv2[b], NULL, Cm, c.gate, NULL, &bn2);
  grad_status st = grad__store_conv_backward_set(s, &project, store__bw(s, b, CRAD_PROJECT), Cm,
                                                 n, tmp, D, store__bg(s, b, CRAD_PROJECT), NULL,
                                                 ws);
  if (st != GRAD_OK) return st;
  /* Through the hard-swish, then SE: dL/db2 = dm * gate + dL/dpooled / P, the
   * broadcast add taken by BatchNorm's backward. */
  run_pass_bn(GATE_BACKWARD, planes, k.P, t->conv2[b], NULL, D, c.gate, dgate, &bn2);
  se_backward(s, b, &k, &c, dgate, dpooled, dz);
  for (size_t q = 0; q < planes; q++) dpooled[q] /= (float)k.P;
  /* bn2, depthwise, hard-swish and bn1 backward channel by channel
   * (depthwise.h), a1 = hswish(bn1(conv1)) recomputed on the way: Cm =
   * dL/dconv1. */
  grad__dw_stage stage = dw_stage(s, t, b, &k, &c);
  stage.d2 = D;
  stage.plane_add = dpooled;
  stage.d1 = Cm;
  stage.scratch = B;
  grad__dw_stage_backward(&stage);
  /* The expansion's input gradient adds to the residual path already in d. */
  return grad__store_conv_backward(s, &expand, store__bw(s, b, CRAD_EXPAND), t->act[b], n, Cm, d,
                                   store__bg(s, b, CRAD_EXPAND), NULL, ws);
}
