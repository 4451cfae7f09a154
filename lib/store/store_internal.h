/*
 * Internal interface of the grid feature store (docs/method.md sections 4-6):
 * local and global grids, coordinate nets, decoder; forward for inference
 * and training, backward, and the parameter list the optimiser walks.
 * Layouts are N,C,H,W float32. The public handle is grad_store (store.h in
 * include/grad).
 */
#ifndef GRAD_STORE_INTERNAL_H
#define GRAD_STORE_INTERNAL_H

#include <grad/store.h>

#include "core.h"
#include "safetensors.h"

typedef struct grad__store_config {
  int channels;    /* C: feature channels after the channel reduction */
  int height;      /* H x W: the feature map */
  int width;
  int local_res;   /* Rl (8) */
  int global_res;  /* Rg (4) */
  int blocks;      /* N decoder blocks at 2C (7 BasicBlocks in GRAD, 11 bottlenecks in CRAD) */
  int decoder;     /* grad__decoder: 0 (BasicBlock) when left zero */
  int expansion;   /* E: CRAD bottleneck width (864, or 216 for CRAD-s); 0 for BasicBlock */
} grad__store_config;

/* The decoder's block type (docs/store.md). */
typedef enum grad__decoder {
  GRAD__DECODER_BASIC = 0,  /* ResNet BasicBlocks (GRAD) */
  GRAD__DECODER_CRAD = 1    /* MobileNetV3 bottlenecks with squeeze-and-excitation (CRAD) */
} grad__decoder;

typedef enum grad__param_group {
  GRAD__PARAM_GRID = 0,  /* the two grids: learning rate 0.1 */
  GRAD__PARAM_NET = 1    /* everything else: learning rate 1e-3 */
} grad__param_group;

/* A trainable tensor (grad != NULL) or a buffer such as a BatchNorm running
 * statistic (grad == NULL). Names are the model file's tensor names. */
typedef struct grad__param {
  const char *name;        /* e.g. "store.local_grid", "store.decoder.3.bn1.weight" */
  float *value;
  float *grad;
  size_t count;
  int ndim;
  int64_t shape[4];
  grad__param_group group;
} grad__param;

/* Initialised as docs/method.md section 6: weights N(0, 0.01^2), biases 0, BN
 * weight 1 / bias 0 / running mean 0 / running var 1, grids Xavier-normal
 * (torch's fans for 1 x C x Rl x Rl and 1 x CHW x Rg x Rg). One grad__rng
 * seeded with seed fills the tensors in parameter order. Parameters are
 * listed in a fixed order: local_grid, global_grid, local_net.{0,1}.
 * {weight,bias}, global_net.{0,1}.{weight,bias}, then per decoder block
 * conv1.weight, bn1.weight, bn1.bias, conv2.weight, bn2.weight, bn2.bias
 * (BasicBlock; CRAD's bottleneck has its own list, docs/store.md), and
 * out.weight last; buffers are per block the BatchNorms' running_mean and
 * running_var, in the blocks' BatchNorm order. */
grad_status grad__store_create(const grad__store_config *config, uint64_t seed,
                               grad_store **out);
const grad__store_config *grad__store_config_of(const grad_store *store);

/* Sets config's decoder and expansion from a public options struct's
 * decoder name (NULL or "basic"; "crad") and width (0 for "crad": 4 x
 * config->channels, as CRAD's code). GRAD_E_INVALID_ARG for another name;
 * the width is checked by grad__store_create. */
grad_status grad__store_decoder_set(grad__store_config *config, const char *decoder,
                                    int expansion);

size_t grad__store_param_count(const grad_store *store);
grad__param *grad__store_param(grad_store *store, size_t index);
size_t grad__store_buffer_count(const grad_store *store);
grad__param *grad__store_buffer(grad_store *store, size_t index);
void grad__store_zero_grad(grad_store *store);
/* Says the values or running statistics changed (an optimiser step, a
 * training forward, a checkpoint read into the store): what scoring built
 * from them (the decoder laid out for oneDNN) is remade on its next use.
 * Whoever writes through grad__store_param/_buffer calls it. */
void grad__store_touch(grad_store *store);
/* The precision of scoring's BasicBlock decoder on oneDNN (grad_model_compute_set
 * passes the model's on): bf16 weights and maps, fp32 accumulation and bias.
 * The CRAD decoder and builds without oneDNN stay fp32. Not thread-safe:
 * before scoring. */
void grad__store_precision_set(grad_store *store, grad_precision precision);
/* The precision the training convolutions run in (grad_train_options). */
void grad__store_train_precision_set(grad_store *store, grad_precision precision);
/* Bytes the store holds for scoring beyond its tensors: the decoder's
 * folded and laid-out weights (store_dnnl.c; 0 before the first scoring
 * call and without oneDNN). Thread-safe. */
size_t grad__store_engine_bytes(const grad_store *store);

/* Inference: R = store(F) with BatchNorm running statistics. Does not
 * modify the store, so several threads may call it with their own ws.
 * Scratch (3 maps of n x 2C x H x W floats) is released before return. */
grad_status grad__store_reconstruct(const grad_store *store, grad_workspace *ws, const float *F,
                                    int n, float *R);

/* What the backward pass needs from a training forward; lives in ws. */
typedef struct grad__store_tape grad__store_tape;

/*
 * Training forward: batch statistics in BatchNorm (running statistics are
 * updated, momentum 0.1), coord_noise (n x 2 x H x W, or NULL) added to the
 * local coordinates after their tanh. R: n x C x H x W.
 * The tape is allocated in ws at its current position (it copies F; about
 * (3 * blocks + 2) maps of n x 2C x H x W floats) and stays valid until ws
 * is reset or released below it: reset ws before each step, not between
 * the forward and the backward. Needs n * H * W > 1 (BatchNorm).
 */
grad_status grad__store_forward_train(grad_store *store, grad_workspace *ws, const float *F,
                                      int n, const float *coord_noise, float *R,
                                      grad__store_tape **tape);
/* Adds dL/dparam to every param->grad, given dL/dR (n x C x H x W). The
 * tape may be used again (the gradients then add up again); scratch comes
 * from ws after the tape and is released before return. */
grad_status grad__store_backward(grad_store *store, grad__store_tape *tape, const float *dR,
                                 grad_workspace *ws);

/*
 * The training loss of docs/method.md section 6: the mean over all n*C*H*W
 * elements of (R' - F)^2, R' the fused reconstruction; dR (may be NULL)
 * receives dL/dR, with the gradient flowing through the cosine term only.
 */
double grad__fusion_loss(const float *R, const float *F, int n, int channels, size_t positions,
                         float *dR);

/* Model files: "store.*" tensors plus "store.*" metadata keys. */
grad_status grad__store_write(const grad_store *store, grad__st_writer *writer);
grad_status grad__store_read(const grad__st_file *file, grad_store **out);

#endif
