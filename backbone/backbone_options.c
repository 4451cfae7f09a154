/*
 * The backbone options of every family: their defaults, the struct_size
 * policy, and the checks of the fields all backbones share (layers, input
 * size, output stride), once for ResNet and EfficientNet alike.
 */
#include "backbone_internal.h"

static const grad_backbone_options default_options = {
  .struct_size = sizeof(grad_backbone_options),
  .arch = "resnet18",
  .weights_path = NULL,
  .random_seed = 0,
  .layers = GRAD_BACKBONE_LAYER(2) | GRAD_BACKBONE_LAYER(3),
  .input_size = 224,
  .output_stride = 8,
};

void grad_backbone_options_init(grad_backbone_options *opts, size_t struct_size) {
  grad__struct_init(opts, struct_size, &default_options, sizeof default_options);
}

grad_status grad__backbone_options_resolve(const grad_backbone_options *in,
                                           grad_backbone_options *out) {
  *out = default_options;
  return grad__struct_read("grad_backbone_options", in,
                           GRAD__STRUCT_MIN(grad_backbone_options, arch), out, sizeof *out);
}

grad_status grad__backbone_options_check(const grad_backbone_options *opts, int max_layer,
                                         const char *arch) {
  unsigned all = 0;
  for (int k = 1; k <= max_layer; k++) all |= GRAD_BACKBONE_LAYER(k);
  if (opts->layers == 0 || (opts->layers & ~all))
    return grad__fail(GRAD_E_INVALID_ARG,
                      "grad_backbone_options.layers is 0x%x: %s has layers 1..%d (bits 1..%d) "
                      "and nothing else",
                      opts->layers, arch, max_layer, max_layer);
  if (opts->input_size < 32 || opts->input_size > 4096)
    return grad__fail(GRAD_E_INVALID_ARG, "grad_backbone_options.input_size %d is outside 32..4096",
                      opts->input_size);
  int s = opts->output_stride;
  if (s != 4 && s != 8 && s != 16 && s != 32)
    return grad__fail(GRAD_E_INVALID_ARG,
                      "grad_backbone_options.output_stride %d is not 4, 8, 16 or 32", s);
  return GRAD_OK;
}
