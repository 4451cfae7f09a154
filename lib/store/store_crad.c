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
#include "store_impl.h"

/* relu6(x + 3) / 6 */
static float hard_sigmoid(float x) {
  float r = x + 3.0f;
  r = r < 0.0f ? 0.0f : r > 6.0f ? 6.0f : r;
  return r / 6.0f;
}

/* x * relu6(x + 3) / 6, in torch's order of operations. */
static float hard_swish(float x) {
  float r = x + 3.0f;
  r = r < 0.0f ? 0.0f : r > 6.0f ? 6.0f : r;
  return x * r / 6.0f;
}

/* d hard_swish / dx; at -3 and 3 the one-sided values torch's relu6 gives
 * (its mask is open at both ends). */
static float hard_swish_grad(float x) {
  if (x <= -3.0f) return 0.0f;
  if (x >= 3.0f) return 1.0f;
  return (2.0f * x + 3.0f) / 6.0f;
}

static void hard_swish_inplace(float *v, size_t count) {
  for (size_t i = 0; i < count; i++) v[i] = hard_swish(v[i]);
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
 * Squeeze-and-excitation on m (n x E x P), in place. pooled (n x E),
 * hidden (n x R, after the ReLU) and gate (n x E, before the hard sigmoid)
 * receive what the backward needs.
 */
static void se_forward(const grad_store *s, int b, const crad_dims *k, float *m, float *pooled,
                       float *hidden, float *gate) {
  const float *W1 = store__bw(s, b, CRAD_SE_REDUCE), *W2 = store__bw(s, b, CRAD_SE_EXPAND);
  const int E = k->E, R = k->R;
  for (int i = 0; i < k->n; i++) {
    float *mi = m + (size_t)i * E * k->P, *p = pooled + (size_t)i * E;
    float *z = hidden + (size_t)i * R, *u = gate + (size_t)i * E;
    for (int e = 0; e < E; e++) {
      double sum = 0.0;
      for (size_t j = 0; j < k->P; j++) sum += mi[(size_t)e * k->P + j];
      p[e] = (float)(sum / (double)k->P);
    }
    for (int r = 0; r < R; r++) {
      double acc = 0.0;
      for (int e = 0; e < E; e++) acc += (double)W1[(size_t)r * E + e] * p[e];
      z[r] = acc > 0.0 ? (float)acc : 0.0f;
    }
    for (int e = 0; e < E; e++) {
      double acc = 0.0;
      for (int r = 0; r < R; r++) acc += (double)W2[(size_t)e * R + r] * z[r];
      u[e] = (float)acc;
      const float g = hard_sigmoid(u[e]);
      float *row = mi + (size_t)e * k->P;
      for (size_t j = 0; j < k->P; j++) row[j] *= g;
    }
  }
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
  hard_swish_inplace(e1, k.emap);
  grad__depthwise_conv2d(e1, store__bw(s, b, CRAD_DEPTHWISE), n, k.E, k.h, k.w, 3, e2);
  grad__bn_forward_eval(e2, n, k.E, k.P, store__bw(s, b, CRAD_BN2_W), store__bw(s, b, CRAD_BN2_B),
                        store__b(s, b, CRAD_BN2_MEAN), store__b(s, b, CRAD_BN2_VAR), false, e2);
  float *pooled = se_scratch, *hidden = pooled + (size_t)n * k.E, *gate = hidden + (size_t)n * k.R;
  se_forward(s, b, &k, e2, pooled, hidden, gate);
  hard_swish_inplace(e2, k.emap);
  st = grad__conv2d(&project, store__bw(s, b, CRAD_PROJECT), NULL, false, e2, n, k.h, k.w, t, ws);
  if (st != GRAD_OK) return st;
  grad__bn_forward_eval(t, n, k.C2, k.P, store__bw(s, b, CRAD_BN3_W), store__bw(s, b, CRAD_BN3_B),
                        store__b(s, b, CRAD_BN3_MEAN), store__b(s, b, CRAD_BN3_VAR), false, t);
  const size_t maps = (size_t)n * k.C2 * k.P;
  for (size_t j = 0; j < maps; j++) x[j] += t[j];
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

grad_status grad__crad_block_train(grad_store *s, grad__store_tape *t, int b, float *scratch,
                                   grad_workspace *ws) {
  const int n = t->n;
  const crad_dims k = dims_of(s, n);
  const crad_tape c = tape_of(t, b, &k);
  const grad__conv expand = {k.C2, k.E, 1, 1, 0}, project = {k.E, k.C2, 1, 1, 0};
  float *e1 = scratch, *e2 = scratch + k.emap, *tmp = e2 + k.emap;
  grad_status st = grad__store_conv_forward(s, &expand, store__bw(s, b, CRAD_EXPAND), NULL,
                                            t->act[b], n, t->conv1[b], ws);
  if (st != GRAD_OK) return st;
  grad__bn_forward_train(t->conv1[b], n, k.E, k.P, store__bw(s, b, CRAD_BN1_W),
                         store__bw(s, b, CRAD_BN1_B), store__b(s, b, CRAD_BN1_MEAN),
                         store__b(s, b, CRAD_BN1_VAR), c.mean1, c.invstd1, false, e1);
  hard_swish_inplace(e1, k.emap);
  grad__depthwise_conv2d(e1, store__bw(s, b, CRAD_DEPTHWISE), n, k.E, k.h, k.w, 3, t->conv2[b]);
  grad__bn_forward_train(t->conv2[b], n, k.E, k.P, store__bw(s, b, CRAD_BN2_W),
                         store__bw(s, b, CRAD_BN2_B), store__b(s, b, CRAD_BN2_MEAN),
                         store__b(s, b, CRAD_BN2_VAR), c.mean2, c.invstd2, false, e2);
  se_forward(s, b, &k, e2, c.pooled, c.hidden, c.gate);
  hard_swish_inplace(e2, k.emap);
  st = grad__store_conv_forward(s, &project, store__bw(s, b, CRAD_PROJECT), NULL, e2, n,
                                t->conv3[b], ws);
  if (st != GRAD_OK) return st;
  grad__bn_forward_train(t->conv3[b], n, k.C2, k.P, store__bw(s, b, CRAD_BN3_W),
                         store__bw(s, b, CRAD_BN3_B), store__b(s, b, CRAD_BN3_MEAN),
                         store__b(s, b, CRAD_BN3_VAR), c.mean3, c.invstd3, false, tmp);
  const float *in = t->act[b];
  float *out = t->act[b + 1];
  const size_t maps = (size_t)n * k.C2 * k.P;
  for (size_t j = 0; j < maps; j++) out[j] = in[j] + tmp[j];
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
  float *A = emaps, *B = emaps + k.emap, *Cm = B + k.emap, *D = Cm + k.emap;
  float *dgate = se_scratch, *dpooled = dgate + (size_t)n * k.E, *dz = dpooled + (size_t)n * k.E;

  /* Projection: d (dL/d output) reaches the input unchanged by the residual. */
  grad__bn_backward(t->conv3[b], d, NULL, n, k.C2, k.P, store__bw(s, b, CRAD_BN3_W), c.mean3,
                    c.invstd3, tmp, NULL, store__bg(s, b, CRAD_BN3_W), store__bg(s, b, CRAD_BN3_B));
  /* Recompute b2 = bn2(conv2) in A, m = b2 * gate in B, a2 = hswish(m) in Cm. */
  grad__bn_apply(t->conv2[b], n, k.E, k.P, store__bw(s, b, CRAD_BN2_W),
                 store__bw(s, b, CRAD_BN2_B), c.mean2, c.invstd2, false, A);
  for (int i = 0; i < n; i++)
    for (int e = 0; e < k.E; e++) {
      const float g = hard_sigmoid(c.gate[(size_t)i * k.E + e]);
      const size_t at = ((size_t)i * k.E + e) * k.P;
      for (size_t j = 0; j < k.P; j++) {
        B[at + j] = A[at + j] * g;
        Cm[at + j] = hard_swish(B[at + j]);
      }
    }
  memset(D, 0, sizeof(float) * k.emap);
  grad_status st = grad__store_conv_backward(s, &project, store__bw(s, b, CRAD_PROJECT), Cm, n,
                                             tmp, D, store__bg(s, b, CRAD_PROJECT), NULL, ws);
  if (st != GRAD_OK) return st;
  /* Through the hard-swish, then SE: dL/db2 = dm * gate + dL/dpooled / P. */
  for (size_t j = 0; j < k.emap; j++) D[j] *= hard_swish_grad(B[j]);
  for (int i = 0; i < n; i++)
    for (int e = 0; e < k.E; e++) {
      const size_t at = ((size_t)i * k.E + e) * k.P;
      double sum = 0.0;
      for (size_t j = 0; j < k.P; j++) sum += (double)D[at + j] * A[at + j];
      dgate[(size_t)i * k.E + e] = (float)sum;
      const float g = hard_sigmoid(c.gate[(size_t)i * k.E + e]);
      for (size_t j = 0; j < k.P; j++) D[at + j] *= g;
    }
  se_backward(s, b, &k, &c, dgate, dpooled, dz);
  for (int i = 0; i < n; i++)
    for (int e = 0; e < k.E; e++) {
      const size_t at = ((size_t)i * k.E + e) * k.P;
      const float add = dpooled[(size_t)i * k.E + e] / (float)k.P;
      for (size_t j = 0; j < k.P; j++) D[at + j] += add;
    }
  grad__bn_backward(t->conv2[b], D, NULL, n, k.E, k.P, store__bw(s, b, CRAD_BN2_W), c.mean2,
                    c.invstd2, D, NULL, store__bg(s, b, CRAD_BN2_W), store__bg(s, b, CRAD_BN2_B));
  /* Depthwise: recompute h1 = bn1(conv1) in A and a1 = hswish(h1) in B. */
  grad__bn_apply(t->conv1[b], n, k.E, k.P, store__bw(s, b, CRAD_BN1_W),
                 store__bw(s, b, CRAD_BN1_B), c.mean1, c.invstd1, false, A);
  for (size_t j = 0; j < k.emap; j++) B[j] = hard_swish(A[j]);
  memset(Cm, 0, sizeof(float) * k.emap);
  grad__depthwise_conv2d_backward(B, store__bw(s, b, CRAD_DEPTHWISE), D, n, k.E, k.h, k.w, 3, Cm,
                                  store__bg(s, b, CRAD_DEPTHWISE));
  for (size_t j = 0; j < k.emap; j++) Cm[j] *= hard_swish_grad(A[j]);
  grad__bn_backward(t->conv1[b], Cm, NULL, n, k.E, k.P, store__bw(s, b, CRAD_BN1_W), c.mean1,
                    c.invstd1, Cm, NULL, store__bg(s, b, CRAD_BN1_W), store__bg(s, b, CRAD_BN1_B));
  /* The expansion's input gradient adds to the residual path already in d. */
  return grad__store_conv_backward(s, &expand, store__bw(s, b, CRAD_EXPAND), t->act[b], n, Cm, d,
                                   store__bg(s, b, CRAD_EXPAND), NULL, ws);
}
