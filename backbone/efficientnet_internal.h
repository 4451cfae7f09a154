/*
 * Internal interface of the EfficientNet backbone (docs/backbone.md): the
 * architecture descriptor, the network as built (BatchNorm folded), and the
 * entry points the generic backbone functions hand an EfficientNet to.
 */
#ifndef GRAD_EFFICIENTNET_INTERNAL_H
#define GRAD_EFFICIENTNET_INTERNAL_H

#include "backbone_internal.h"

/* The two weight layouts: torchvision's efficientnet_b* (symmetric
 * padding k/2, "features.i.j.block.m" names) and efficientnet_pytorch's
 * (TF "same" padding for the input size, "_blocks.n._depthwise_conv"). */
typedef enum grad__effnet_layout {
  GRAD__EFFNET_TORCHVISION = 0,
  GRAD__EFFNET_SAME = 1,
} grad__effnet_layout;

/*
 * EfficientNet from its base network (b0: stem 3x3/2 to 32 channels, then
 * seven stages of MBConv blocks (expand ratio, kernel, stride, channels,
 * repeats): (1,3,1,16,1) (6,3,2,24,2) (6,5,2,40,2) (6,3,2,80,3)
 * (6,5,1,112,3) (6,5,2,192,4) (6,3,1,320,1)) scaled by width_mult
 * (channels rounded to multiples of 8, never below 90 %) and depth_mult
 * (repeats rounded up).
 */
typedef struct grad__effnet_arch {
  const char *name;
  double width_mult, depth_mult;
  grad__effnet_layout layout;
  double bn_eps;  /* of the BatchNorm layers in the weight files (folded at load) */
} grad__effnet_arch;

/* The table entry for a name (efficientnet_b0..b7, efficientnet_b0_same..
 * efficientnet_b7_same); NULL when unknown. */
const grad__effnet_arch *grad__effnet_arch_find(const char *name);

enum { GRAD__EFFNET_STAGES = 7, GRAD__EFFNET_LAYERS = 5 };

/* One convolution: a regular one (cin -> cout) or a depthwise one
 * (groups = channels = cout, cin 1 per group), BatchNorm folded into
 * weight and bias, or (bn empty) a convolution with its own bias (SE). */
typedef struct grad__effnet_conv {
  int cin, cout, kernel, stride;
  bool depthwise;
  float *weight;  /* cout x cin x k x k (cin = 1 when depthwise) */
  float *bias;    /* cout */
  char name[GRAD__BB_NAME];
  char bn[GRAD__BB_NAME];
} grad__effnet_conv;

/* An MBConv block: [expand 1x1 + swish] -> depthwise kxk/stride + swish ->
 * SE (mean, reduce + swish, expand + sigmoid, scale) -> project 1x1
 * [+ input when stride 1 and cin == cout]. Stochastic depth is training-only. */
typedef struct grad__effnet_block {
  int stage;  /* 1..7 */
  int cin, cexp, csq, cout, kernel, stride;
  bool residual;
  grad__effnet_conv *expand;  /* NULL when the expand ratio is 1 */
  grad__effnet_conv *depthwise, *se_reduce, *se_expand, *project;
} grad__effnet_block;

typedef struct grad__effnet {
  grad__effnet_arch arch;
  char arch_name[GRAD__BB_NAME];
  int last_stage;                        /* base stage of the last block built */
  grad__effnet_conv *convs;              /* the stem, then each block's, in order */
  int conv_count;
  grad__effnet_block *blocks;
  int block_count;
  int stage_channels[GRAD__EFFNET_STAGES + 1];  /* [0]: the stem's */
} grad__effnet;

/* The table's names by index from 0; NULL past the last one. */
const char *grad__effnet_arch_name(int index);
/* grad_backbone_arch_channels for an EfficientNet (layers 1..5). */
grad_status grad__effnet_arch_channels(const grad__effnet_arch *arch, unsigned layers,
                                       int *channels);

/* The base stage whose output is layer k (1..5): 1, 2, 3, 5, 7. */
int grad__effnet_layer_stage(int layer);

/* grad_backbone_create for an EfficientNet descriptor (also a non-standard
 * one, as the golden tests use). */
grad_status grad__effnet_create(const grad__effnet_arch *arch, const grad_backbone_options *opts,
                                grad_backbone **out);
void grad__effnet_free(grad__effnet *net);
/* The structure alone, every weight zero (model files fill it). */
grad_status grad__effnet_build(const grad__effnet_arch *arch, const grad_backbone_options *opts,
                               grad_backbone **out);

/* Weights: torchvision's initialisation from seed, or a state dict of the
 * arch's layout (names as in the conv list) with BatchNorm folded. */
grad_status grad__effnet_init_random(grad_backbone *bb, uint64_t seed);
grad_status grad__effnet_load_file(grad_backbone *bb, const grad__st_file *file);

/* Model files: see grad__backbone_write/read (metadata family=efficientnet). */
grad_status grad__effnet_write(const grad_backbone *bb, grad__st_writer *w, const char *prefix);
grad_status grad__effnet_read(const grad__st_file *f, const char *prefix, grad_backbone **out);

/*
 * The forward pass of n images of h x w (N,C,H,W; the public API is
 * square, the tests also run non-square ones): stages[k] (k = 1..5), when
 * not NULL and layer k is built, receives n x C_k x H_k x W_k. Uses ws with
 * mark/release.
 */
grad_status grad__effnet_stages(const grad_backbone *bb, grad_workspace *ws, const float *images,
                                int n, int h, int w, float *const stages[6]);
/* The aligned, concatenated features (grad__backbone_features). */
grad_status grad__effnet_features(const grad_backbone *bb, grad_workspace *ws,
                                  const float *images, int n, float *out);
/* Workspace bytes a call with n images takes (reserved up front). */
size_t grad__effnet_workspace_bytes(const grad_backbone *bb, int n);

/* Side of a map after `stride` halvings of size by ceil(size / 2). */
int grad__effnet_map_size(int size, int stride);

#endif /* GRAD_EFFICIENTNET_INTERNAL_H */
