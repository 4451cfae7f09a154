/*
 * The store's backward pass: from dL/dR through the output conv, the
 * decoder's blocks, the grid sampling (into both grids and both coordinate
 * sets) and the two coordinate nets. Gradients accumulate into param->grad.
 */
#include <string.h>

#include "batchnorm.h"
#include "conv_backward.h"
#include "grid_sample.h"
#include "store_impl.h"

/* d[j] *= 1 - y[j]^2 for y = tanh(.) */
static void tanh_backward(float *d, const float *y, size_t count) {
  for (size_t j = 0; j < count; j++) d[j] *= 1.0f - y[j] * y[j];
}

/* Block b backward: on entry d holds dL/d(block output); on return
 * dL/d(block input). tmp, r1 and dr1 are scratch maps. */
static grad_status block_backward(grad_store *s, const grad__store_tape *t, int b, float *d,
                                  float *tmp, float *r1, float *dr1, grad_workspace *ws) {
  const grad__store_config *c = &s->config;
  const int n = t->n, C2 = 2 * c->channels;
  const size_t P = (size_t)c->height * c->width, maps = (size_t)n * C2 * P;
  const grad__conv conv3 = {C2, C2, 3, 1, 1};
  const float *stats = t->stats + (size_t)b * t->stats_per_block;
  /* d becomes dL/d(bn2 + input) (the block's ReLU), and tmp dL/d(conv2). */
  grad__bn_backward(t->conv2[b], d, t->act[b + 1], n, C2, P,
                    store__w(s, store__block(s, b, BLOCK_BN2_W)), stats + 2 * C2,
                    stats + 3 * C2, tmp, d, store__g(s, store__block(s, b, BLOCK_BN2_W)),
                    store__g(s, store__block(s, b, BLOCK_BN2_B)));
  grad__bn_apply(t->conv1[b], n, C2, P, store__w(s, store__block(s, b, BLOCK_BN1_W)),
                 store__w(s, store__block(s, b, BLOCK_BN1_B)), stats, stats + C2, true, r1);
  memset(dr1, 0, sizeof(float) * maps);
  grad_status st = grad__store_conv_backward(s, &conv3, store__bw(s, b, BLOCK_CONV2), r1, n, tmp,
                                             dr1, store__bg(s, b, BLOCK_CONV2), NULL, ws);
  if (st != GRAD_OK) return st;
  /* through BN1's ReLU (its output r1) and BN1: tmp = dL/d(conv1) */
  grad__bn_backward(t->conv1[b], dr1, r1, n, C2, P, store__w(s, store__block(s, b, BLOCK_BN1_W)),
                    stats, stats + C2, tmp, NULL, store__g(s, store__block(s, b, BLOCK_BN1_W)),
                    store__g(s, store__block(s, b, BLOCK_BN1_B)));
  /* The residual path already sits in d; conv1's input gradient adds to it. */
  return grad__store_conv_backward(s, &conv3, store__bw(s, b, BLOCK_CONV1), t->act[b], n, tmp, d,
                                   store__bg(s, b, BLOCK_CONV1), NULL, ws);
}

/* Global coordinate net backward for one image, given dL/dv. */
static void global_net_backward(grad_store *s, const grad__store_tape *t, int i,
                                const float *dv, float *da) {
  const int C = s->config.channels;
  const float *g = t->mean_f + (size_t)i * C, *a = t->global_hidden + (size_t)i * C;
  const float *v = t->global + 2 * i;
  const float *V2 = store__w(s, STORE_GLOBAL_W2);
  float *dV1 = store__g(s, STORE_GLOBAL_W1), *dc1 = store__g(s, STORE_GLOBAL_B1);
  float *dV2 = store__g(s, STORE_GLOBAL_W2), *dc2 = store__g(s, STORE_GLOBAL_B2);
  float dpre[2];
  for (int k = 0; k < 2; k++) {
    dpre[k] = dv[k] * (1.0f - v[k] * v[k]);
    dc2[k] += dpre[k];
    for (int j = 0; j < C; j++) dV2[(size_t)k * C + j] += dpre[k] * a[j];
  }
  for (int j = 0; j < C; j++) {
    float d = V2[j] * dpre[0] + V2[(size_t)C + j] * dpre[1];
    da[j] = d * (1.0f - a[j] * a[j]);
  }
  for (int r = 0; r < C; r++) {
    dc1[r] += da[r];
    for (int j = 0; j < C; j++) dV1[(size_t)r * C + j] += da[r] * g[j];
  }
}

/* From dQ into both grids, both coordinate sets and both coordinate nets. */
static grad_status query_backward(grad_store *s, const grad__store_tape *t, const float *dQ,
                                  float *du, float *dh, float *da, grad_workspace *ws) {
  const grad__store_config *c = &s->config;
  const int n = t->n, C = c->channels;
  const size_t P = (size_t)c->height * c->width, CP = (size_t)C * P;
  for (int i = 0; i < n; i++) {
    const float *dq = dQ + (size_t)i * 2 * CP;
    float dv[2];
    grad__grid_sample_backward(store__w(s, STORE_GLOBAL_GRID), (int)CP, c->global_res,
                               c->global_res, t->global + 2 * i, t->global + 2 * i + 1, 1, dq,
                               store__g(s, STORE_GLOBAL_GRID), dv, dv + 1);
    global_net_backward(s, t, i, dv, da);
    const float *xy = t->coords + (size_t)i * 2 * P;
    float *d = du + (size_t)i * 2 * P;
    grad__grid_sample_backward(store__w(s, STORE_LOCAL_GRID), C, c->local_res, c->local_res, xy,
                               xy + P, P, dq + CP, store__g(s, STORE_LOCAL_GRID), d, d + P);
  }
  /* The noise is additive, so dL/du = dL/dcoords. */
  tanh_backward(du, t->local, (size_t)n * 2 * P);
  const grad__conv first = {C, C, 1, 1, 0}, second = {C, 2, 1, 1, 0};
  memset(dh, 0, sizeof(float) * (size_t)n * CP);
  grad_status st = grad__store_conv_backward(s, &second, store__w(s, STORE_LOCAL_W2), t->hidden,
                                             n, du, dh, store__g(s, STORE_LOCAL_W2),
                                             store__g(s, STORE_LOCAL_B2), ws);
  if (st != GRAD_OK) return st;
  tanh_backward(dh, t->hidden, (size_t)n * CP);
  return grad__store_conv_backward(s, &first, store__w(s, STORE_LOCAL_W1), t->features, n, dh,
                                   NULL, store__g(s, STORE_LOCAL_W1), store__g(s, STORE_LOCAL_B1),
                                   ws);
}

grad_status grad__store_backward(grad_store *s, grad__store_tape *t, const float *dR,
                                 grad_workspace *ws) {
  if (!s || !t || !dR || !ws)
    return grad__fail(GRAD_E_INVALID_ARG, "grad__store_backward: NULL argument");
  if (t->store != s)
    return grad__fail(GRAD_E_INVALID_ARG,
                      "grad__store_backward: the tape comes from another store");
  const grad__store_config *c = &s->config;
  const int n = t->n, C = c->channels, C2 = 2 * C, h = c->height, w = c->width;
  const size_t P = (size_t)h * w, maps = (size_t)n * C2 * P;

  const bool crad = c->decoder == GRAD__DECODER_CRAD;
  const size_t E = (size_t)c->expansion;
  size_t mark = grad__ws_mark(ws);
  float *d = grad__ws_floats(ws, maps), *tmp = grad__ws_floats(ws, maps);
  /* BasicBlock: r1 and dr1, 2C maps each; CRAD: 4 E maps (at least 2C, for
   * query_backward) and SE values. */
  const size_t emaps = 4 * E > (size_t)C2 ? 4 * E : (size_t)C2;
  float *r1 = grad__ws_floats(ws, crad ? (size_t)n * emaps * P : maps);
  float *dr1 = crad ? grad__ws_floats(ws, (size_t)n * (2 * E + E / CRAD_SE_REDUCTION))
                    : grad__ws_floats(ws, maps);
  float *da = grad__ws_floats(ws, (size_t)C);
  if (!d || !tmp || !r1 || !dr1 || !da) {
    grad__ws_release(ws, mark);
    return grad__fail_context(GRAD_E_NOMEM, "grad__store_backward");
  }
  memset(d, 0, sizeof(float) * maps);
  const grad__conv out = {C2, C, 1, 1, 0};
  grad_status st = grad__store_conv_backward(s, &out, store__w(s, store__out(s)),
                                             t->act[c->blocks], n, dR, d,
                                             store__g(s, store__out(s)), NULL, ws);
  for (int b = c->blocks - 1; b >= 0 && st == GRAD_OK; b--)
    st = crad ? grad__crad_block_backward(s, t, b, d, tmp, r1, dr1, ws)
              : block_backward(s, t, b, d, tmp, r1, dr1, ws);
  /* d is now dL/dQ; tmp and r1 are free to hold du and dh. */
  if (st == GRAD_OK) st = query_backward(s, t, d, tmp, r1, da, ws);
  grad__ws_release(ws, mark);
  return st == GRAD_OK ? st : grad__fail_context(st, "grad__store_backward");
}
