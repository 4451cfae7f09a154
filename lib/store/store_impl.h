/*
 * The grid feature store's private layout, shared by store.c (parameters,
 * files), store_forward.c and store_backward.c. Nothing outside those files
 * includes it: the trainer sees only lib/store/store_internal.h.
 */
#ifndef GRAD_STORE_IMPL_H
#define GRAD_STORE_IMPL_H

#include "store_internal.h"

/* Parameter indices, in the order of grad__store_param(). The decoder's
 * blocks follow, STORE_PER_BLOCK tensors each, then the output conv. */
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
enum { BLOCK_CONV1 = 0, BLOCK_BN1_W, BLOCK_BN1_B, BLOCK_CONV2, BLOCK_BN2_W, BLOCK_BN2_B,
       STORE_PER_BLOCK };
enum { BLOCK_BN1_MEAN = 0, BLOCK_BN1_VAR, BLOCK_BN2_MEAN, BLOCK_BN2_VAR,
       STORE_BUFFERS_PER_BLOCK };

struct grad_store {
  grad__store_config config;
  size_t param_count, buffer_count;
  grad__param *params;
  grad__param *buffers;
  float *values;         /* every parameter, one block */
  float *grads;          /* their gradients, same layout */
  float *buffer_values;  /* the running statistics */
  char *names;           /* storage of all the names */
};

static inline size_t store__block(int block, int k) {
  return STORE_BLOCK0 + (size_t)block * STORE_PER_BLOCK + (size_t)k;
}
static inline size_t store__out(const grad_store *s) {
  return STORE_BLOCK0 + (size_t)s->config.blocks * STORE_PER_BLOCK;
}
static inline size_t store__buf(int block, int k) {
  return (size_t)block * STORE_BUFFERS_PER_BLOCK + (size_t)k;
}
static inline const float *store__w(const grad_store *s, size_t index) {
  return s->params[index].value;
}
static inline float *store__g(grad_store *s, size_t index) { return s->params[index].grad; }
static inline const float *store__b(const grad_store *s, int block, int k) {
  return s->buffers[store__buf(block, k)].value;
}

/*
 * Everything the backward pass reads, in the workspace: the input, the
 * coordinate nets' activations, the query and, per block, the convolution
 * outputs before BatchNorm with their batch statistics and the block output.
 * The ReLU between the two convolutions is recomputed from conv1.
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
  float **conv1, **conv2;  /* per block, n x 2C x P, before BatchNorm */
  float *stats;      /* per block: mean1, invstd1, mean2, invstd2 (2C each) */
};

/* Validates a configuration (limits included); message on failure. */
grad_status grad__store_check_config(const grad__store_config *config);

#endif
