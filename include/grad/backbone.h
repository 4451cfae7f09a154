/* libgrad: The frozen ResNet/WideResNet feature extractor and its neck (docs/method.md sections 2-3). */
#ifndef GRAD_BACKBONE_H
#define GRAD_BACKBONE_H

#include <grad/common.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * A frozen torchvision-layout ResNet or WideResNet, or an EfficientNet
 * b0..b7 (torchvision's or efficientnet_pytorch's layout), cut after the last stage
 * it needs, with eval-mode BatchNorm folded into the convolutions, plus the
 * neck: the chosen stages resized (bilinear, align_corners=True) to one
 * output stride and concatenated along channels.
 *
 *   grad_backbone_options opts;
 *   grad_backbone_options_init(&opts, sizeof opts);
 *   opts.arch = "wide_resnet50_2";
 *   opts.weights_path = "wide_resnet50_2.safetensors";  // tools/convert_torchvision.py
 *   grad_backbone *bb = NULL;
 *   grad_workspace *ws = NULL;
 *   if (grad_backbone_create(&opts, &bb) == GRAD_OK && grad_workspace_create(&ws) == GRAD_OK) {
 *     // images: n x 3 x 224 x 224 from grad_image_to_tensor
 *     // out: n x grad_backbone_feature_channels(bb) x _height(bb) x _width(bb)
 *     grad_backbone_features(bb, ws, images, n, out);
 *   }
 *
 * A backbone is immutable once created: any number of threads may call
 * grad_backbone_features at once, each with its own workspace.
 */
typedef struct grad_backbone grad_backbone;

/* Bit of a stage in grad_backbone_options.layers: GRAD_BACKBONE_LAYER(2) is layer2. */
#define GRAD_BACKBONE_LAYER(k) (1u << (k))

/*
 * Options of grad_backbone_create. Versioned like every option struct of
 * libgrad: fill it with grad_backbone_options_init(&opts, sizeof opts) and
 * then change fields. Fields are only ever appended; a program built
 * against an older, shorter definition keeps the defaults of the fields it
 * does not know, and one built against a newer definition is accepted as
 * long as the fields this library does not know are left at zero.
 */
typedef struct grad_backbone_options {
  size_t struct_size;        /* the caller's sizeof(grad_backbone_options), set by _init */
  /* "resnet18", "resnet34", "resnet50", "resnet101", "wide_resnet50_2",
   * "wide_resnet101_2", "efficientnet_b0".."efficientnet_b7" (torchvision's
   * layout) or "efficientnet_b0_same".."efficientnet_b7_same"
   * (efficientnet_pytorch's: TF "same" padding, BatchNorm eps 1e-3; see
   * docs/backbone.md). Default "resnet18" (the paper uses EfficientNet-b4:
   * see docs/method.md, "Defaults"). */
  const char *arch;
  /* A safetensors file with torchvision's state-dict names (F32, F16 or
   * BF16), as written by tools/convert_torchvision.py; NULL (the default)
   * means seeded random weights in torchvision's initialisation. */
  const char *weights_path;
  /* Seed of the random weights when weights_path is NULL. Default 0. */
  uint64_t random_seed;
  /* Stages returned, GRAD_BACKBONE_LAYER(1..4) or-ed (1..5 for an
   * EfficientNet: its stages at strides 2, 4, 8, 16, 32); default layer2 +
   * layer3. Stages after the last one set are neither loaded nor computed. */
  unsigned layers;
  /* Input images are input_size x input_size; 32..4096, default 224. */
  int input_size;
  /* Stride of the aligned features: 4, 8 (default), 16 or 32. */
  int output_stride;
} grad_backbone_options;

/*
 * Fills the struct_size bytes at opts with the defaults above and sets
 * opts->struct_size; pass sizeof of your struct, so a program built against
 * an older header is never written past its end. NULL is a no-op.
 * Thread-safe.
 */
GRAD_API void grad_backbone_options_init(grad_backbone_options *opts, size_t struct_size);

/* The known architectures by index from 0, in a fixed order (for option
 * lists and error messages); NULL past the last one. */
GRAD_API const char *grad_backbone_arch_name(int index);

/*
 * The channels of the features arch would return for layers (bits as in
 * grad_backbone_options.layers), without building the network: the upper
 * bound of a model's reduced channels. GRAD_E_INVALID_ARG for an unknown
 * arch (the message lists the known ones) or layers outside 1..4 (1..5 for
 * an EfficientNet).
 */
GRAD_API GRAD_NODISCARD grad_status grad_backbone_arch_channels(const char *arch, unsigned layers,
                                                                int *channels);

/*
 * Builds the network and loads (or draws) its weights. Errors:
 * GRAD_E_INVALID_ARG (an unknown arch, a bad option), GRAD_E_IO/FORMAT (the
 * file), GRAD_E_MISSING (a needed tensor absent: the message names it),
 * GRAD_E_SHAPE (a tensor of the wrong shape: name, expected and found
 * shapes), GRAD_E_NUMERIC (a NaN/Inf weight or a negative running
 * variance: the tensor), GRAD_E_NOMEM. *out is NULL on failure.
 */
GRAD_API GRAD_NODISCARD grad_status grad_backbone_create(const grad_backbone_options *opts,
                                                         grad_backbone **out);

/* Frees the backbone; NULL is a no-op. */
GRAD_API void grad_backbone_free(grad_backbone *bb);

/* Shape of the features of one image: C x H x W. */
GRAD_API int grad_backbone_feature_channels(const grad_backbone *bb);
GRAD_API int grad_backbone_feature_height(const grad_backbone *bb);
GRAD_API int grad_backbone_feature_width(const grad_backbone *bb);

GRAD_API int grad_backbone_input_size(const grad_backbone *bb);
GRAD_API int grad_backbone_output_stride(const grad_backbone *bb);
GRAD_API unsigned grad_backbone_layers(const grad_backbone *bb);
/* Channels of stage layer (1..4, 1..5 for an EfficientNet) in the full
 * network; 0 for another value. */
GRAD_API int grad_backbone_stage_channels(const grad_backbone *bb, int layer);
/* The architecture's name, e.g. "wide_resnet50_2". */
GRAD_API const char *grad_backbone_arch(const grad_backbone *bb);
/* Where the weights came from, for logs and demos: "random (seed 7)",
 * "file resnet18.safetensors (source=...)" or "model file". */
GRAD_API const char *grad_backbone_weights_source(const grad_backbone *bb);

/*
 * Features of n images: images is n x 3 x S x S (S = input size), already
 * normalised (grad_image_to_tensor); out receives n x C x H x W floats in
 * that order. Uses ws for all scratch: anything handed out from ws before
 * the call is invalid afterwards; after the first call with a given batch
 * size no memory is allocated (oneDNN's own small objects aside). Images
 * go through in groups of up to 8, so memory stays bounded for any n.
 * Convolutions use grad_workspace_threads_set() threads, else
 * grad_threads_set()'s. Errors:
 * GRAD_E_INVALID_ARG (NULL pointer, n < 1), GRAD_E_NOMEM.
 */
GRAD_API GRAD_NODISCARD grad_status grad_backbone_features(const grad_backbone *bb,
                                                           grad_workspace *ws,
                                                           const float *images, int n,
                                                           float *out);

/*
 * Chooses how the backbone computes (see grad_engine, grad_precision in
 * common.h); a new backbone has GRAD_ENGINE_AUTO and GRAD_PRECISION_FP32.
 * Not thread-safe: call it before the backbone is shared between threads.
 * The engine lays the weights out on the first grad_backbone_features call
 * after it. Errors: GRAD_E_INVALID_ARG (NULL, an unknown value),
 * GRAD_E_UNSUPPORTED (the engine is not built in, or bf16 on a CPU without
 * native bf16 or with the im2col engine); the backbone is unchanged then.
 */
GRAD_API GRAD_NODISCARD grad_status grad_backbone_compute_set(grad_backbone *bb,
                                                              grad_engine engine,
                                                              grad_precision precision);
/* Multiply-adds of one image through every convolution built (for FLOP
 * counts: 2 x this per image); 0 for NULL and for the EfficientNets. */
GRAD_API double grad_backbone_macs(const grad_backbone *bb);

/* The engine in use (never AUTO) and the precision. */
GRAD_API grad_engine grad_backbone_engine(const grad_backbone *bb);
GRAD_API grad_precision grad_backbone_precision(const grad_backbone *bb);

#ifdef __cplusplus
}
#endif

#endif /* GRAD_BACKBONE_H */
