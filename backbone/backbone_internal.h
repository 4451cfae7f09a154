/*
 * Internal interface of the backbone: the architecture descriptor, the
 * network as built (folded convolutions), the raw stage outputs, the neck's
 * resize, and saving/rebuilding a backbone inside a model file.
 */
#ifndef GRAD_BACKBONE_INTERNAL_H
#define GRAD_BACKBONE_INTERNAL_H

#include <grad/backbone.h>

#include "conv.h"
#include "core.h"
#include "safetensors.h"

/*
 * A torchvision ResNet: ResNet(block, blocks, width_per_group). Stem conv
 * 7x7/2 to 64 channels, BN, ReLU, maxpool 3x3/2; stage k (1..4) has
 * blocks[k-1] blocks of planes 64 << (k-1), stride 1 for layer1 and 2 after.
 * BasicBlock (expansion 1): 3x3(stride) + 3x3. Bottleneck (expansion 4):
 * 1x1 to width = planes * width_per_group / 64, 3x3(stride), 1x1 to
 * 4 * planes. The first block of a stage whose stride or channel count
 * changes has a downsample: 1x1 conv (stride) + BN.
 */
typedef struct grad__resnet_arch {
  const char *name;
  bool bottleneck;
  int blocks[4];
  int width_per_group;  /* 64; 128 for the wide variants */
} grad__resnet_arch;

/* The table entry for a torchvision name; NULL when unknown. */
const grad__resnet_arch *grad__resnet_arch_find(const char *name);

enum { GRAD__BB_NAME = 48, GRAD__BB_MAX_BLOCKS = 64 };

/* One convolution with its BatchNorm folded in (so it always has a bias). */
typedef struct grad__bb_conv {
  grad__conv shape;
  float *weight;              /* Cout x Cin x K x K, into the backbone's storage */
  float *bias;                /* Cout */
  char name[GRAD__BB_NAME];   /* torchvision module, e.g. "layer2.0.conv1" */
  char bn[GRAD__BB_NAME];     /* its BatchNorm, e.g. "layer2.0.bn1" */
} grad__bb_conv;

typedef struct grad__bb_block {
  int stage;                  /* 1..4 */
  int convs;                  /* 2 (basic) or 3 (bottleneck) */
  grad__bb_conv conv[3];
  bool downsample;
  grad__bb_conv down;
} grad__bb_block;

struct grad_backbone {
  grad__resnet_arch arch;
  char arch_name[GRAD__BB_NAME];
  char source[320];           /* grad_backbone_weights_source */
  unsigned layers;
  int last_stage;             /* highest stage built */
  int input_size;
  int output_stride;
  grad__bb_conv stem;
  grad__bb_block *blocks;     /* all blocks of stages 1..last_stage, in order */
  int block_count;
  int stage_channels[6];      /* [k]: channels of stage k (full network) */
  int stage_size[6];          /* [k]: side of stage k's map; [0]: the stem's */
  int feature_channels;
  int feature_size;           /* H = W of the aligned features */
  float *storage;             /* all weights and biases */
  size_t storage_floats;
  /* An EfficientNet (efficientnet_internal.h) instead of a ResNet: then
   * arch, stem and blocks are unused and layers go up to 5. */
  struct grad__effnet *effnet;
  grad_engine engine;         /* GRAD_ENGINE_ONEDNN or GRAD_ENGINE_IM2COL */
  grad_precision precision;
  struct grad__bb_dnnl *dnnl; /* the oneDNN engine's primitives and weights (resnet_dnnl.c) */
};

/* A caller's options over the defaults, by the struct_size policy of
 * core.h (in NULL: the defaults). Values are checked when building
 * (backbone_options.c). */
grad_status grad__backbone_options_resolve(const grad_backbone_options *in,
                                           grad_backbone_options *out);
/* The fields every family checks alike: layers only among 1..max_layer (and
 * at least one), input size 32..4096, output stride 4, 8, 16 or 32;
 * GRAD_E_INVALID_ARG naming the field (and arch, for the layers). */
grad_status grad__backbone_options_check(const grad_backbone_options *opts, int max_layer,
                                         const char *arch);

/*
 * Builds the structure for a descriptor (which may be a non-standard
 * configuration, as the golden tests use) with every weight zero: the
 * options' arch and weights_path are ignored. Validates layers, size, stride.
 */
grad_status grad__backbone_build(const grad__resnet_arch *arch, const grad_backbone_options *opts,
                                 grad_backbone **out);

/* Calls fn for every convolution in torchvision's state-dict order. */
typedef grad_status (*grad__bb_conv_fn)(grad__bb_conv *conv, void *ctx);
grad_status grad__backbone_each_conv(grad_backbone *bb, grad__bb_conv_fn fn, void *ctx);

/* Weights: torchvision's initialisation drawn from seed (convs
 * kaiming-normal, fan_out, ReLU gain; BN weight 1, bias 0, mean 0, var 1),
 * or a torchvision state dict from a safetensors file; both folded. */
grad_status grad__backbone_init_random(grad_backbone *bb, uint64_t seed);
grad_status grad__backbone_load_file(grad_backbone *bb, const grad__st_file *file);

/* GRAD_E_INVALID_ARG naming an unknown architecture and the known ones
 * (resnet.c). */
grad_status grad__backbone_arch_unknown(const char *name);

/* The weights of a built bb (ResNet or EfficientNet): load from
 * opts->weights_path with load, else init from opts->random_seed; sets
 * bb->source. On failure frees bb; on success *out = bb (resnet_load.c). */
typedef grad_status (*grad__bb_load_fn)(grad_backbone *bb, const grad__st_file *file);
typedef grad_status (*grad__bb_init_fn)(grad_backbone *bb, uint64_t seed);
grad_status grad__backbone_fill(grad_backbone *bb, const grad_backbone_options *opts,
                                grad__bb_load_fn load, grad__bb_init_fn init, grad_backbone **out);

/* grad_backbone_create for a descriptor: build + random or file weights. */
grad_status grad__backbone_create_arch(const grad__resnet_arch *arch,
                                       const grad_backbone_options *opts, grad_backbone **out);

/* The argument checks of a forward entry point fn (stages, features). */
grad_status grad__bb_check_call(const grad_backbone *bb, grad_workspace *ws, const float *images,
                                int n, const void *out, const char *fn);

/*
 * The stages of n images (n x 3 x S x S): stages[k] (k = 1..4), when not
 * NULL and k is in the backbone's layers, receives n x C_k x H_k x W_k.
 * Uses ws with mark/release (no reset).
 */
grad_status grad__backbone_stages(const grad_backbone *bb, grad_workspace *ws,
                                  const float *images, int n, float *const stages[5]);

/* grad_backbone_features with mark/release instead of a reset, for callers
 * that keep their own data in ws. */
grad_status grad__backbone_features(const grad_backbone *bb, grad_workspace *ws,
                                    const float *images, int n, float *out);

/* Receives a requested stage's output: n images of a group, the first
 * being image `first` of the group, in C,N,H,W order (fp32). */
typedef void (*grad__bb_sink)(void *ctx, int stage, const float *x, int n, int first,
                              int channels, int size);

/* Images per group; a group's blocks up to `split` (grad__bb_split) run
 * one image at a time. */
enum { GRAD__BB_GROUP_MAX = 8 };

/* ---- The oneDNN engine (resnet_dnnl.c) ---- */
/* The engine's state, created with the backbone; freed with it. */
grad_status grad__bb_dnnl_create(grad_backbone *bb);
void grad__bb_dnnl_free(grad_backbone *bb);
/* Bytes of the weights laid out for the engine so far (0 before its first
 * call and without oneDNN). Thread-safe. */
size_t grad__bb_dnnl_weight_bytes(const grad_backbone *bb);
/* Workspace bytes of a call on n images (n <= GRAD__BB_GROUP_MAX) with
 * `threads` threads, making the primitives it needs; 0 with the status in
 * *st on failure. */
size_t grad__bb_dnnl_bytes(const grad_backbone *bb, int n, int threads, grad_status *st);
/* One group of n images (n x 3 x S x S) through the network; every
 * requested stage goes to sink. Scratch from ws (mark/release). */
grad_status grad__bb_dnnl_run(const grad_backbone *bb, grad_workspace *ws, const float *images,
                              int n, grad__bb_sink sink, void *ctx);

/* Max pooling 3x3, stride 2, padding 1 (torchvision's stem) of planes
 * h x w into planes of ((h - 1) / 2 + 1) x ((w - 1) / 2 + 1). */
void grad__maxpool_3x3s2(const float *x, size_t planes, int h, int w, float *y);

/*
 * Stores what rebuilds the backbone into a model file: per convolution
 * prefix + name + ".weight" / ".bias" (folded), and metadata prefix +
 * "arch", "bottleneck", "blocks", "width_per_group", "layers", "input_size",
 * "output_stride", "source". Only the stages built are stored.
 */
grad_status grad__backbone_write(const grad_backbone *bb, grad__st_writer *w, const char *prefix);
/* Model-file writing shared by ResNet and EfficientNet: one metadata key
 * prefix+key; the keys every backbone has (layers 1..max_layer,
 * input_size, output_stride, source); one folded conv's weight and bias. */
grad_status grad__bb_put_meta(grad__st_writer *w, const char *prefix, const char *key,
                              const char *value);
grad_status grad__bb_put_common(const grad_backbone *bb, grad__st_writer *w, const char *prefix,
                                int max_layer);
grad_status grad__bb_put_conv(grad__st_writer *w, const char *prefix, const char *name, int cout,
                              int cin, int kernel, const float *weight, const float *bias);
/* bb->storage: bb->storage_floats zeroed floats for every weight and bias
 * (conv_bn_load.c). GRAD_E_NOMEM with the size; bb is left to the caller. */
grad_status grad__bb_storage_alloc(grad_backbone *bb);

/*
 * Reads one conv (conv_bn_load.c): prefix+name+".weight" (cout x cin x
 * kernel x kernel) into weight, then either its BatchNorm
 * prefix+bn+".weight/.bias/.running_mean/.running_var" folded in
 * (w * gamma / sqrt(var + eps), beta - mean * gamma / sqrt(var + eps);
 * bn_scratch holds 4 x cout floats), or, with bn NULL or "", its own
 * prefix+name+".bias" (a folded conv of a model file, a conv without
 * BatchNorm). GRAD_E_NUMERIC names a negative running variance.
 */
grad_status grad__bb_get_conv(const grad__st_file *f, const char *prefix, const char *name,
                              const char *bn, int cout, int cin, int kernel, double eps,
                              float *weight, float *bias, float *bn_scratch);
/* A weights file whose "arch" metadata names another architecture than
 * bb's: GRAD_E_INVALID_ARG naming both. */
grad_status grad__bb_check_file_arch(const grad_backbone *bb, const grad__st_file *file);
/* st, with "backbone weights" (and the path, unless the message has it)
 * put before the message. */
grad_status grad__bb_load_failed(grad_status st, const grad__st_file *file);
/* Rebuilds a backbone written by grad__backbone_write. */
grad_status grad__backbone_read(const grad__st_file *f, const char *prefix, grad_backbone **out);

#endif /* GRAD_BACKBONE_INTERNAL_H */
