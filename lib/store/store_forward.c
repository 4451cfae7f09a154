/*
 * The store's forward passes (docs/method.md sections 4-5): coordinate nets,
 * grid sampling into the query, the decoder. Inference leaves the store
 * untouched; the training forward records its tape in the workspace.
 */
#include <math.h>
#include <string.h>

#include "batchnorm.h"
#include "conv.h"
#include "depthwise_fused.h"
#include "grid_sample.h"
#include "store_impl.h"

static size_t plane_of(const grad_store *s) {
  return (size_t)s->config.height * s->config.width;
}

/* A 1x1 conv of the local coordinate net: on the training engine
 * (store_conv.c, as in the backward) when `train` is the store, else (a
 * read-only store, scoring from any thread) im2col + sgemm. */
static grad_status coord_conv(const grad_store *s, grad_store *train, const grad__conv *conv,
                              int weight, int bias, const float *x, int n, float *y,
                              grad_workspace *ws) {
  return train ? grad__store_conv_forward(train, conv, store__w(s, weight), store__w(s, bias), x,
                                          n, y, ws)
               : grad__conv2d(conv, store__w(s, weight), store__w(s, bias), false, x, n,
                              s->config.height, s->config.width, y, ws);
}

/* hidden = tanh(W1 F + b1), local = tanh(W2 hidden + b2), both 1x1 convs;
 * train: see coord_conv. */
static grad_status local_coords(const grad_store *s, grad_store *train, const float *F, int n,
                                float *hidden, float *local, grad_workspace *ws) {
  const grad__store_config *c = &s->config;
  const grad__conv first = {c->channels, c->channels, 1, 1, 0};
  const grad__conv second = {c->channels, 2, 1, 1, 0};
  const size_t P = plane_of(s);
  grad_status st =
      coord_conv(s, train, &first, STORE_LOCAL_W1, STORE_LOCAL_B1, F, n, hidden, ws);
  if (st != GRAD_OK) return st;
  grad__tanh_inplace(hidden, (size_t)n * c->channels * P);
  st = coord_conv(s, train, &second, STORE_LOCAL_W2, STORE_LOCAL_B2, hidden, n, local, ws);
  if (st != GRAD_OK) return st;
  grad__tanh_inplace(local, (size_t)n * 2 * P);
  return GRAD_OK;
}

/* out = tanh(weight x + bias) for a rows x cols linear layer. */
static void linear_tanh(const float *weight, const float *bias, int rows, int cols,
                        const float *x, float *out) {
  for (int r = 0; r < rows; r++) {
    double acc = bias[r];
    for (int k = 0; k < cols; k++) acc += (double)weight[(size_t)r * cols + k] * x[k];
    out[r] = (float)acc;
  }
  grad__tanh_inplace(out, (size_t)rows);
}

/* Where the global and local coordinates go. */
typedef struct query_job {
  const grad_store *s;
  int n;
  const float *F, *coords;
  float *mean_f, *hidden, *v, *Q;
} query_job;

/* Map i: g = mean_p f_p, hidden = tanh(V1 g + c1), v = tanh(V2 hidden + c2),
 * then Q = concat(global grid at v reshaped to C x H x W, local grid at the
 * coordinates). */
static void query_map(const query_job *j, int i) {
  const grad_store *s = j->s;
  const grad__store_config *c = &s->config;
  const int C = c->channels;
  const size_t P = plane_of(s), CP = (size_t)C * P;
  float *g = j->mean_f + (size_t)i * C, *hidden = j->hidden + (size_t)i * C, *v = j->v + 2 * i;
  for (int ch = 0; ch < C; ch++) {
    const float *f = j->F + ((size_t)i * C + ch) * P;
    double sum = 0.0;
    for (size_t p = 0; p < P; p++) sum += f[p];
    g[ch] = (float)(sum / (double)P);
  }
  linear_tanh(store__w(s, STORE_GLOBAL_W1), store__w(s, STORE_GLOBAL_B1), C, C, g, hidden);
  linear_tanh(store__w(s, STORE_GLOBAL_W2), store__w(s, STORE_GLOBAL_B2), 2, C, hidden, v);
  float *q = j->Q + (size_t)i * 2 * CP;
  grad__grid_sample(store__w(s, STORE_GLOBAL_GRID), (int)CP, c->global_res, c->global_res, v,
                    v + 1, 1, q);
  const float *xy = j->coords + (size_t)i * 2 * P;
  grad__grid_sample(store__w(s, STORE_LOCAL_GRID), C, c->local_res, c->local_res, xy, xy + P, P,
                    q + CP);
}

static void query_part(void *ctx, int part, int parts) {
  const query_job *j = ctx;
  for (int i = part; i < j->n; i += parts) query_map(j, i);
}

/* The query of n maps, maps side by side on `threads` threads. */
static void query(const grad_store *s, int threads, const float *F, int n, const float *coords,
                  float *mean_f, float *hidden, float *v, float *Q) {
  query_job j = {s, n, F, coords, mean_f, hidden, v, Q};
  grad__parallel_threads(threads, threads < n ? threads : n, query_part, &j);
}

static grad_status check_args(const grad_store *s, grad_workspace *ws, const float *F, int n,
                              const float *R, const char *call) {
  if (!s || !ws || !F || !R)
    return grad__fail(GRAD_E_INVALID_ARG, "%s: store, ws, features or output is NULL", call);
  if (n < 1) return grad__fail(GRAD_E_INVALID_ARG, "%s: batch size %d < 1", call, n);
  size_t total;
  if (!grad__mul_size((size_t)n, 2 * (size_t)s->config.channels * plane_of(s), &total) ||
      total > (size_t)1 << 40)
    return grad__fail(GRAD_E_TOO_LARGE, "%s: batch of %d maps is too large", call, n);
  return GRAD_OK;
}

/* One BasicBlock at inference: x is replaced by the block's output. */
static grad_status basic_block_eval(const grad_store *s, int b, float *x, int n, float *t1,
                                    float *t2, grad_workspace *ws) {
  const grad__store_config *c = &s->config;
  const int C2 = 2 * c->channels, h = c->height, w = c->width;
  const size_t P = plane_of(s), maps = (size_t)n * C2 * P;
  const grad__conv conv3 = {C2, C2, 3, 1, 1};
  grad_status st = grad__conv2d(&conv3, store__bw(s, b, BLOCK_CONV1), NULL, false, x, n, h, w,
                                t1, ws);
  if (st != GRAD_OK) return st;
  grad__bn_forward_eval(t1, n, C2, P, store__bw(s, b, BLOCK_BN1_W), store__bw(s, b, BLOCK_BN1_B),
                        store__b(s, b, BLOCK_BN1_MEAN), store__b(s, b, BLOCK_BN1_VAR), true, t1);
  st = grad__conv2d(&conv3, store__bw(s, b, BLOCK_CONV2), NULL, false, t1, n, h, w, t2, ws);
  if (st != GRAD_OK) return st;
  grad__bn_forward_eval(t2, n, C2, P, store__bw(s, b, BLOCK_BN2_W), store__bw(s, b, BLOCK_BN2_B),
                        store__b(s, b, BLOCK_BN2_MEAN), store__b(s, b, BLOCK_BN2_VAR), false, t2);
  for (size_t j = 0; j < maps; j++) {
    float y = t2[j] + x[j];
    x[j] = y > 0.0f ? y : 0.0f;
  }
  return GRAD_OK;
}

/* Floats of block scratch the decoder needs (beside the 2C activation map):
 * BasicBlock two 2C maps; CRAD two E maps and one 2C map, plus SE values. */
static size_t block_scratch_floats(const grad_store *s, int n) {
  const grad__store_config *c = &s->config;
  const size_t P = plane_of(s), C2 = 2 * (size_t)c->channels, E = (size_t)c->expansion;
  if (c->decoder == GRAD__DECODER_CRAD)
    return (size_t)n * (2 * E + C2) * P + (size_t)n * (2 * E + E / CRAD_SE_REDUCTION);
  return (size_t)n * 2 * C2 * P;
}

grad_status grad__store_reconstruct(const grad_store *s, grad_workspace *ws, const float *F,
                                    int n, float *R) {
  grad_status st = check_args(s, ws, F, n, R, "grad_store_reconstruct");
  if (st != GRAD_OK) return st;
  const grad__store_config *c = &s->config;
  const int C = c->channels, C2 = 2 * C, h = c->height, w = c->width;
  const size_t P = plane_of(s), maps = (size_t)n * C2 * P;
  const grad__conv out = {C2, C, 1, 1, 0};

  size_t mark = grad__ws_mark(ws);
  float *x = grad__ws_floats(ws, maps);
  float *scratch = grad__ws_floats(ws, block_scratch_floats(s, n));
  float *local = grad__ws_floats(ws, (size_t)n * 2 * P);
  float *small = grad__ws_floats(ws, (size_t)n * (2 * C + 2));
  if (!x || !scratch || !local || !small) {
    grad__ws_release(ws, mark);
    return grad__fail_context(GRAD_E_NOMEM, "grad_store_reconstruct");
  }
  float *mean_f = small, *hidden = small + (size_t)n * C, *v = small + (size_t)n * 2 * C;
  /* The local net's hidden layer (n x C x P) fits in the block scratch. */
  st = local_coords(s, NULL, F, n, scratch, local, ws);
  if (st == GRAD_OK) query(s, grad__threads(ws), F, n, local, mean_f, hidden, v, x);
  const bool crad = c->decoder == GRAD__DECODER_CRAD;
  float *se = scratch + (size_t)n * (2 * (size_t)c->expansion + C2) * P;
  if (st == GRAD_OK && grad__store_dnnl_applies(s)) {
    st = grad__store_decode_dnnl(s, ws, x, n, R);
    grad__ws_release(ws, mark);
    return st == GRAD_OK ? st : grad__fail_context(st, "grad_store_reconstruct");
  }
  for (int b = 0; b < c->blocks && st == GRAD_OK; b++)
    st = crad ? grad__crad_block_eval(s, b, x, n, scratch, se, ws)
              : basic_block_eval(s, b, x, n, scratch, scratch + maps, ws);
  if (st == GRAD_OK) st = grad__conv2d(&out, store__w(s, store__out(s)), NULL, false, x, n, h, w,
                                       R, ws);
  grad__ws_release(ws, mark);
  return st == GRAD_OK ? st : grad__fail_context(st, "grad_store_reconstruct");
}

/* The tape's arrays, all from ws. */
static grad_status tape_alloc(const grad_store *s, grad_workspace *ws, int n,
                              bool noise, grad__store_tape **out) {
  const grad__store_config *c = &s->config;
  const int C = c->channels, N = c->blocks;
  const bool crad = c->decoder == GRAD__DECODER_CRAD;
  const size_t P = plane_of(s), maps = (size_t)n * 2 * C * P, E = (size_t)c->expansion;
  const size_t inner = crad ? (size_t)n * E * P : maps; /* conv1 and conv2 outputs */
  grad__store_tape *t = grad__ws_alloc(ws, sizeof *t);
  if (!t) return GRAD_E_NOMEM;
  memset(t, 0, sizeof *t);
  t->store = s;
  t->n = n;
  t->features = grad__ws_floats(ws, (size_t)n * C * P);
  t->hidden = grad__ws_floats(ws, (size_t)n * C * P);
  t->local = grad__ws_floats(ws, (size_t)n * 2 * P);
  t->coords = noise ? grad__ws_floats(ws, (size_t)n * 2 * P) : t->local;
  t->mean_f = grad__ws_floats(ws, (size_t)n * (2 * C + 2));
  t->act = grad__ws_alloc(ws, sizeof(float *) * (size_t)(4 * N + 1));
  /* mean and invstd per BatchNorm: 2 x 2C twice, or 2 x E twice and 2 x 2C */
  t->stats_per_block = crad ? 4 * E + 4 * (size_t)C : 8 * (size_t)C;
  t->stats = grad__ws_floats(ws, t->stats_per_block * (N ? N : 1));
  t->se_per_block = crad ? (size_t)n * (2 * E + E / CRAD_SE_REDUCTION) : 0;
  t->se = crad ? grad__ws_floats(ws, t->se_per_block * (N ? N : 1)) : NULL;
  if (!t->features || !t->hidden || !t->local || !t->coords || !t->mean_f || !t->act ||
      !t->stats || (crad && !t->se))
    return GRAD_E_NOMEM;
  t->global_hidden = t->mean_f + (size_t)n * C;
  t->global = t->mean_f + (size_t)n * 2 * C;
  t->conv1 = t->act + N + 1;
  t->conv2 = t->conv1 + N;
  t->conv3 = t->conv2 + N;
  for (int b = 0; b <= N; b++)
    if (!(t->act[b] = grad__ws_floats(ws, maps))) return GRAD_E_NOMEM;
  for (int b = 0; b < N; b++) {
    if (!(t->conv1[b] = grad__ws_floats(ws, inner)) || !(t->conv2[b] = grad__ws_floats(ws, inner)))
      return GRAD_E_NOMEM;
    t->conv3[b] = crad ? grad__ws_floats(ws, maps) : NULL;
    if (crad && !t->conv3[b]) return GRAD_E_NOMEM;
  }
  *out = t;
  return GRAD_OK;
}

/* One BasicBlock in training mode: tape conv outputs, stats and output. */
static grad_status block_train(grad_store *s, grad__store_tape *t, int b, float *scratch,
                               grad_workspace *ws) {
  const grad__store_config *c = &s->config;
  const int n = t->n, C2 = 2 * c->channels;
  const size_t P = plane_of(s), maps = (size_t)n * C2 * P;
  const grad__conv conv3 = {C2, C2, 3, 1, 1};
  float *stats = t->stats + (size_t)b * t->stats_per_block;
  grad_status st = grad__store_conv_forward(s, &conv3, store__bw(s, b, BLOCK_CONV1), NULL,
                                            t->act[b], n, t->conv1[b], ws);
  if (st != GRAD_OK) return st;
  grad__bn_forward_train(t->conv1[b], n, C2, P, store__w(s, store__block(s, b, BLOCK_BN1_W)),
                         store__w(s, store__block(s, b, BLOCK_BN1_B)),
                         s->buffers[store__buf(s, b, BLOCK_BN1_MEAN)].value,
                         s->buffers[store__buf(s, b, BLOCK_BN1_VAR)].value, stats, stats + C2,
                         true, scratch);
  st = grad__store_conv_forward(s, &conv3, store__bw(s, b, BLOCK_CONV2), NULL, scratch, n,
                                t->conv2[b], ws);
  if (st != GRAD_OK) return st;
  grad__bn_forward_train(t->conv2[b], n, C2, P, store__w(s, store__block(s, b, BLOCK_BN2_W)),
                         store__w(s, store__block(s, b, BLOCK_BN2_B)),
                         s->buffers[store__buf(s, b, BLOCK_BN2_MEAN)].value,
                         s->buffers[store__buf(s, b, BLOCK_BN2_VAR)].value, stats + 2 * C2,
                         stats + 3 * C2, false, scratch);
  const float *in = t->act[b];
  float *y = t->act[b + 1];
  for (size_t j = 0; j < maps; j++) {
    float v = scratch[j] + in[j];
    y[j] = v > 0.0f ? v : 0.0f;
  }
  return GRAD_OK;
}

grad_status grad__store_forward_train(grad_store *s, grad_workspace *ws, const float *F, int n,
                                      const float *coord_noise, float *R,
                                      grad__store_tape **tape) {
  grad_status st = check_args(s, ws, F, n, R, "grad__store_forward_train");
  if (st != GRAD_OK) return st;
  if (!tape) return grad__fail(GRAD_E_INVALID_ARG, "grad__store_forward_train: tape is NULL");
  grad__store_touch(s); /* the running statistics move */
  *tape = NULL;
  const grad__store_config *c = &s->config;
  const int C = c->channels, C2 = 2 * C;
  const size_t P = plane_of(s);
  if ((size_t)n * P < 2)
    return grad__fail(GRAD_E_INVALID_ARG,
                      "grad__store_forward_train: BatchNorm needs more than one value per "
                      "channel (batch %d of %dx%d maps)", n, c->height, c->width);
  grad__store_tape *t = NULL;
  st = tape_alloc(s, ws, n, coord_noise != NULL, &t);
  if (st != GRAD_OK) return grad__fail_context(st, "grad__store_forward_train");
  size_t mark = grad__ws_mark(ws);
  float *scratch = grad__ws_floats(ws, block_scratch_floats(s, n));
  if (!scratch) return grad__fail_context(GRAD_E_NOMEM, "grad__store_forward_train");

  memcpy(t->features, F, sizeof(float) * (size_t)n * C * P);
  st = local_coords(s, s, F, n, t->hidden, t->local, ws);
  if (st == GRAD_OK) {
    if (coord_noise)
      for (size_t j = 0; j < (size_t)n * 2 * P; j++) t->coords[j] = t->local[j] + coord_noise[j];
    query(s, grad__threads(ws), F, n, t->coords, t->mean_f, t->global_hidden, t->global,
          t->act[0]);
  }
  for (int b = 0; b < c->blocks && st == GRAD_OK; b++)
    st = c->decoder == GRAD__DECODER_CRAD ? grad__crad_block_train(s, t, b, scratch, ws)
                                          : block_train(s, t, b, scratch, ws);
  if (st == GRAD_OK) {
    const grad__conv out = {C2, C, 1, 1, 0};
    st = grad__store_conv_forward(s, &out, store__w(s, store__out(s)), NULL, t->act[c->blocks], n,
                                  R, ws);
  }
  grad__ws_release(ws, mark);
  if (st != GRAD_OK) return grad__fail_context(st, "grad__store_forward_train");
  *tape = t;
  return GRAD_OK;
}
