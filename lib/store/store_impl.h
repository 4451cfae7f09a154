/*
 * The grid feature store's private layout, shared by store.c (parameters,
 * files), store_forward.c and store_backward.c. Nothing outside those files
 * includes it: the trainer sees only lib/store/store_internal.h.
 */
#ifndef GRAD_STORE_IMPL_H
#define GRAD_STORE_IMPL_H

#include "conv.h"
#include "store_internal.h"

typedef struct grad__conv_dnnl_set grad__conv_dnnl_set;

/* Parameter indices, in the order of grad__store_param(). The decoder's
 * blocks follow, per_block tensors each, then the output conv. */
enum {
  STORE_LOCAL_GRID = 0,   /* 1 x C x Rl x Rl */
  STORE_GLOBAL_GRID,      /* 1 x CHW x Rg x Rg */
  STORE_LOCAL_W1,         /* C x C x 1 x 1 */
  STORE_LOCAL_B1,         /* C */
  STORE_LOCAL_W2,         /* 2 x C x 1 x 1 */
  STORE_LOCAL_B2,         /* 2 */
  STORE_GLOBAL_W1,        /* C x C (linear) */
  STORE_GLOBAL_B1,        /* C */
  STORE_GLOBAL_W2,        /* 2 x C */
  STORE_GLOBAL_B2,        /* 2 */
  STORE_BLOCK0
};
/* A BasicBlock's tensors and buffers. */
enum { BLOCK_CONV1 = 0, BLOCK_BN1_W, BLOCK_BN1_B, BLOCK_CONV2, BLOCK_BN2_W, BLOCK_BN2_B,
       BASIC_PER_BLOCK };
enum { BLOCK_BN1_MEAN = 0, BLOCK_BN1_VAR, BLOCK_BN2_MEAN, BLOCK_BN2_VAR,
       BASIC_BUFFERS_PER_BLOCK };
/* A CRAD bottleneck's tensors and buffers (BatchNorms bn1, bn2, bn3). */
enum { CRAD_EXPAND = 0, CRAD_BN1_W, CRAD_BN1_B, CRAD_DEPTHWISE, CRAD_BN2_W, CRAD_BN2_B,
       CRAD_SE_REDUCE, CRAD_SE_EXPAND, CRAD_PROJECT, CRAD_BN3_W, CRAD_BN3_B, CRAD_PER_BLOCK };
enum { CRAD_BN1_MEAN = 0, CRAD_BN1_VAR, CRAD_BN2_MEAN, CRAD_BN2_VAR, CRAD_BN3_MEAN,
       CRAD_BN3_VAR, CRAD_BUFFERS_PER_BLOCK };
/* Squeeze-and-excitation reduces E channels to E / CRAD_SE_REDUCTION. */
enum { CRAD_SE_REDUCTION = 4 };

struct grad_store {
  grad__store_config config;
  size_t per_block, buffers_per_block;  /* tensors and buffers of one decoder block */
  size_t param_count, buffer_count;
  grad__param *params;
  grad__param *buffers;
  float *values;         /* every parameter, one block */
  float *grads;          /* their gradients, same layout */
  float *buffer_values;  /* the running statistics */
  char *names;           /* storage of all the names */
  grad__conv_dnnl_set *dnnl;  /* training convolutions' primitives (store_conv.c), or NULL */
  unsigned long generation;   /* moves on whenever the values change (grad__store_touch) */
  grad_precision precision;   /* of scoring's decoder on oneDNN (grad__store_precision_set) */
  grad_precision train_precision; /* of the training convolutions (the trainer's option) */
  struct grad__store_dnnl *infer;  /* the decoder on oneDNN at scoring (store_dnnl.c), or NULL */
};

static inline size_t store__block(const grad_store *s, int block, int k) {
  return STORE_BLOCK0 + (size_t)block * s->per_block + (size_t)k;
}
static inline size_t store__out(const grad_store *s) {
  return STORE_BLOCK0 + (size_t)s->config.blocks * s->per_block;
}
static inline size_t store__buf(const grad_store *s, int block, int k) {
  return (size_t)block * s->buffers_per_block + (size_t)k;
}
/* Block b's tensor k: value and gradient. */
static inline const float *store__bw(const grad_store *s, int block, int k) {
  return s->params[store__block(s, block, k)].value;
}
static inline float *store__bg(grad_store *s, int block, int k) {
  return s->params[store__block(s, block, k)].grad;
}
static inline const float *store__w(const grad_store *s, size_t index) {
  return s->params[index].value;
}
static inline float *store__g(grad_store *s, size_t index) { return s->params[index].grad; }
static inline float *store__b(const grad_store *s, int block, int k) {
  return s->buffers[store__buf(s, block, k)].value;
}

/*
 * Everything the backward pass reads, in the workspace: the input, the
 * coordinate nets' activations, the query and, per block, the convolution
 * outputs before BatchNorm with their batch statistics and the block output.
 * The ReLU between the two convolutions is recomputed from conv1. A CRAD
 * bottleneck keeps its expand, depthwise and project outputs (conv1, conv2,
 * conv3) and its squeeze-and-excitation values; the activations between
 * them are recomputed.
 */
struct grad__store_tape {
  const grad_store *store;
  int n;
  float *features;   /* n x C x P, a copy of F */
  float *hidden;     /* n x C x P: tanh(W1 f + b1) */
  float *local;      /* n x 2 x P: the local coordinates u (tanh outputs) */
  float *coords;     /* n x 2 x P: where the local grid was sampled (u + noise) */
  float *mean_f;     /* n x C: g */
  float *global_hidden;  /* n x C: tanh(V1 g + c1) */
  float *global;     /* n x 2: v */
  float **act;       /* blocks + 1 maps of n x 2C x P: act[0] = Q, act[b+1] = block b's output */
  float **conv1, **conv2;  /* per block, before BatchNorm: n x 2C x P (CRAD: n x E x P) */
  float **conv3;     /* CRAD, per block: the projection, n x 2C x P, before BatchNorm */
  float *stats;      /* per block, stats_per_block: mean and invstd of each BatchNorm */
  size_t stats_per_block;
  float *se;         /* CRAD, per block se_per_block: SE's pooled mean (n x E), hidden
                        ReLU output (n x E/4) and gate before the hard sigmoid (n x E) */
  size_t se_per_block;
};

/* The CRAD bottleneck (store_crad.c). x: the block input, n x 2C x P.
 * Inference: x is replaced by the block output; scratch holds 2 maps of
 * n x E x P floats and one of n x 2C x P, se_scratch n x (2E + E/4). */
grad_status grad__crad_block_eval(const grad_store *s, int b, float *x, int n, float *scratch,
                                  float *se_scratch, grad_workspace *ws);
/* Training: reads t->act[b], writes t->act[b + 1] and the block's tape;
 * scratch as for inference. */
grad_status grad__crad_block_train(grad_store *s, grad__store_tape *t, int b, float *scratch,
                                   grad_workspace *ws);
/* Backward: d holds dL/d(block output) on entry, dL/d(block input) on
 * return; scratch: tmp one map of n x 2C x P floats, emaps 4 of n x E x P,
 * se_scratch n x (2E + E/4). */
grad_status grad__crad_block_backward(grad_store *s, const grad__store_tape *t, int b, float *d,
                                      float *tmp, float *emaps, float *se_scratch,
                                      grad_workspace *ws);

/* The training convolutions (the decoder's, and the local coordinate
 * net's 1x1 convs), store_conv.c: y = conv(x) + bias (bias may be NULL);
 * backward adds into dx, dweight and dbias (any may be NULL). Maps are
 * n x channels x height x width of the store's configuration. */
grad_status grad__store_conv_forward(grad_store *s, const grad__conv *conv, const float *weight,
                                     const float *bias, const float *x, int n, float *y,
                                     grad_workspace *ws);
grad_status grad__store_conv_backward(grad_store *s, const grad__conv *conv,
                                      const float *weight, const float *x, int n,
                                      const float *dy, float *dx, float *dweight, float *dbias,
                                      grad_workspace *ws);
/* The same, but dx is overwritten with dL/dx (no zeroing pass before). */
grad_status grad__store_conv_backward_set(grad_store *s, const grad__conv *conv,
                                          const float *weight, const float *x, int n,
                                          const float *dy, float *dx, float *dweight,
                                          float *dbias, grad_workspace *ws);

/* The BasicBlock decoder at scoring time on oneDNN (store_dnnl.c): the
 * blocks and the output convolution of n query maps x (n x 2C x P), into
 * out (n x C x P). applies: built with oneDNN, a BasicBlock decoder. The
 * cache is made in create and freed in free (no-ops without oneDNN). */
enum { GRAD__STORE_DNNL_WORKERS = 8 };
grad_status grad__store_dnnl_create(grad_store *s);
void grad__store_dnnl_free(grad_store *s);
bool grad__store_dnnl_applies(const grad_store *s);
grad_status grad__store_decode_dnnl(const grad_store *s, grad_workspace *ws, const float *x,
                                    int n, float *out);

/* Validates a configuration (limits included); message on failure. */
grad_status grad__store_check_config(const grad__store_config *config);

#endif
