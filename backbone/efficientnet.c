/*
 * EfficientNet b0..b7 in two weight layouts (docs/backbone.md): the
 * architectures from their width/depth coefficients, building the network
 * for a descriptor, and creating/freeing an EfficientNet backbone.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "efficientnet_internal.h"

/*
 * torchvision's efficientnet_b0..b7 use BatchNorm eps 1e-5 up to b4 and
 * 1e-3 from b5 on; efficientnet_pytorch uses 1e-3 throughout.
 */
static const grad__effnet_arch arch_table[] = {
  {"efficientnet_b0", 1.0, 1.0, GRAD__EFFNET_TORCHVISION, 1e-5},
  {"efficientnet_b1", 1.0, 1.1, GRAD__EFFNET_TORCHVISION, 1e-5},
  {"efficientnet_b2", 1.1, 1.2, GRAD__EFFNET_TORCHVISION, 1e-5},
  {"efficientnet_b3", 1.2, 1.4, GRAD__EFFNET_TORCHVISION, 1e-5},
  {"efficientnet_b4", 1.4, 1.8, GRAD__EFFNET_TORCHVISION, 1e-5},
  {"efficientnet_b5", 1.6, 2.2, GRAD__EFFNET_TORCHVISION, 1e-3},
  {"efficientnet_b6", 1.8, 2.6, GRAD__EFFNET_TORCHVISION, 1e-3},
  {"efficientnet_b7", 2.0, 3.1, GRAD__EFFNET_TORCHVISION, 1e-3},
  {"efficientnet_b0_same", 1.0, 1.0, GRAD__EFFNET_SAME, 1e-3},
  {"efficientnet_b1_same", 1.0, 1.1, GRAD__EFFNET_SAME, 1e-3},
  {"efficientnet_b2_same", 1.1, 1.2, GRAD__EFFNET_SAME, 1e-3},
  {"efficientnet_b3_same", 1.2, 1.4, GRAD__EFFNET_SAME, 1e-3},
  {"efficientnet_b4_same", 1.4, 1.8, GRAD__EFFNET_SAME, 1e-3},
  {"efficientnet_b5_same", 1.6, 2.2, GRAD__EFFNET_SAME, 1e-3},
  {"efficientnet_b6_same", 1.8, 2.6, GRAD__EFFNET_SAME, 1e-3},
  {"efficientnet_b7_same", 2.0, 3.1, GRAD__EFFNET_SAME, 1e-3},
};

const grad__effnet_arch *grad__effnet_arch_find(const char *name) {
  if (!name) return NULL;
  for (size_t i = 0; i < sizeof arch_table / sizeof arch_table[0]; i++)
    if (!strcmp(arch_table[i].name, name)) return &arch_table[i];
  return NULL;
}

const char *grad__effnet_arch_name(int index) {
  return index >= 0 && (size_t)index < sizeof arch_table / sizeof arch_table[0]
             ? arch_table[index].name
             : NULL;
}

/* The base network b0: expand ratio, kernel, stride, output channels, repeats. */
static const struct {
  int expand, kernel, stride, channels, repeats;
} base_stages[GRAD__EFFNET_STAGES] = {
  {1, 3, 1, 16, 1}, {6, 3, 2, 24, 2}, {6, 5, 2, 40, 2}, {6, 3, 2, 80, 3},
  {6, 5, 1, 112, 3}, {6, 5, 2, 192, 4}, {6, 3, 1, 320, 1},
};

int grad__effnet_layer_stage(int layer) {
  static const int stage[GRAD__EFFNET_LAYERS + 1] = {0, 1, 2, 3, 5, 7};
  return layer >= 1 && layer <= GRAD__EFFNET_LAYERS ? stage[layer] : 0;
}

int grad__effnet_map_size(int size, int stride) {
  for (; stride > 1; stride /= 2) size = (size + 1) / 2;
  return size;
}

/* Channels scaled by the width coefficient: the nearest multiple of 8
 * (at least 8), one step up when rounding lost more than 10 %. */
static int round_channels(int channels, double width) {
  double v = channels * width;
  int r = (int)(v + 4.0) / 8 * 8;
  if (r < 8) r = 8;
  if (r < 0.9 * v) r += 8;
  return r;
}

static int round_repeats(int repeats, double depth) { return (int)ceil(depth * repeats - 1e-9); }

static unsigned all_layers(void) {
  unsigned all = 0;
  for (int k = 1; k <= GRAD__EFFNET_LAYERS; k++) all |= GRAD_BACKBONE_LAYER(k);
  return all;
}

grad_status grad__effnet_arch_channels(const grad__effnet_arch *arch, unsigned layers,
                                       int *channels) {
  *channels = 0;
  if (layers == 0 || (layers & ~all_layers()))
    return grad__fail(GRAD_E_INVALID_ARG,
                      "grad_backbone_arch_channels: layers 0x%x: an EfficientNet (%s) has "
                      "layers 1..5 (bits 1..5)",
                      layers, arch->name);
  for (int k = 1; k <= GRAD__EFFNET_LAYERS; k++)
    if (layers & GRAD_BACKBONE_LAYER(k))
      *channels += round_channels(base_stages[grad__effnet_layer_stage(k) - 1].channels,
                                  arch->width_mult);
  return GRAD_OK;
}

static grad__effnet_conv *add_conv(grad__effnet *net, int cin, int cout, int kernel, int stride,
                                   bool depthwise, const char *name, const char *bn) {
  grad__effnet_conv *c = &net->convs[net->conv_count++];
  *c = (grad__effnet_conv){cin, cout, kernel, stride, depthwise, NULL, NULL, "", ""};
  snprintf(c->name, sizeof c->name, "%s", name);
  snprintf(c->bn, sizeof c->bn, "%s", bn);
  return c;
}

/* Module names of one block's parts: expand, depthwise, SE reduce/expand,
 * project (conv, then BatchNorm; SE has none). */
static void part_names(const grad__effnet_arch *a, int stage, int index, int global, bool expand,
                       int part, char *conv, char *bn) {
  static const char *const same[5][2] = {{"_expand_conv", "_bn0"}, {"_depthwise_conv", "_bn1"},
                                         {"_se_reduce", ""}, {"_se_expand", ""},
                                         {"_project_conv", "_bn2"}};
  bn[0] = '\0';
  if (a->layout == GRAD__EFFNET_SAME) {
    snprintf(conv, GRAD__BB_NAME, "_blocks.%d.%s", global, same[part][0]);
    if (same[part][1][0]) snprintf(bn, GRAD__BB_NAME, "_blocks.%d.%s", global, same[part][1]);
    return;
  }
  /* torchvision: block.0 expand (when present), then depthwise, SE, project. */
  static const int module[5] = {0, 1, 2, 2, 3};
  int m = module[part] - (expand ? 0 : 1);
  if (part == 2 || part == 3) {
    snprintf(conv, GRAD__BB_NAME, "features.%d.%d.block.%d.fc%d", stage, index, m, part - 1);
  } else {
    snprintf(conv, GRAD__BB_NAME, "features.%d.%d.block.%d.0", stage, index, m);
    snprintf(bn, GRAD__BB_NAME, "features.%d.%d.block.%d.1", stage, index, m);
  }
}

static void build(grad__effnet *net) {
  const grad__effnet_arch *a = &net->arch;
  char name[GRAD__BB_NAME], bn[GRAD__BB_NAME];
  int cin = round_channels(32, a->width_mult);
  net->stage_channels[0] = cin;
  if (a->layout == GRAD__EFFNET_SAME) add_conv(net, 3, cin, 3, 2, false, "_conv_stem", "_bn0");
  else add_conv(net, 3, cin, 3, 2, false, "features.0.0", "features.0.1");
  int global = 0;
  for (int s = 1; s <= net->last_stage; s++) {
    const int cout = round_channels(base_stages[s - 1].channels, a->width_mult);
    const int repeats = round_repeats(base_stages[s - 1].repeats, a->depth_mult);
    for (int j = 0; j < repeats; j++, global++) {
      grad__effnet_block *b = &net->blocks[net->block_count++];
      const bool expand = base_stages[s - 1].expand != 1;
      b->stage = s;
      b->cin = cin;
      b->cexp = cin * base_stages[s - 1].expand;
      b->csq = cin / 4 > 1 ? cin / 4 : 1;
      b->cout = cout;
      b->kernel = base_stages[s - 1].kernel;
      b->stride = j == 0 ? base_stages[s - 1].stride : 1;
      b->residual = b->stride == 1 && cin == cout;
      b->expand = NULL;
      if (expand) {
        part_names(a, s, j, global, expand, 0, name, bn);
        b->expand = add_conv(net, cin, b->cexp, 1, 1, false, name, bn);
      }
      part_names(a, s, j, global, expand, 1, name, bn);
      b->depthwise = add_conv(net, 1, b->cexp, b->kernel, b->stride, true, name, bn);
      part_names(a, s, j, global, expand, 2, name, bn);
      b->se_reduce = add_conv(net, b->cexp, b->csq, 1, 1, false, name, bn);
      part_names(a, s, j, global, expand, 3, name, bn);
      b->se_expand = add_conv(net, b->csq, b->cexp, 1, 1, false, name, bn);
      part_names(a, s, j, global, expand, 4, name, bn);
      b->project = add_conv(net, b->cexp, cout, 1, 1, false, name, bn);
      cin = cout;
    }
    net->stage_channels[s] = cout;
  }
}

static size_t conv_floats(const grad__effnet_conv *c) {
  return (size_t)c->cout * c->cin * c->kernel * c->kernel + c->cout;
}

/* The network for a descriptor up to the last requested layer, all weights
 * zero (placed in bb->storage). */
static grad_status build_backbone(const grad__effnet_arch *arch, const grad_backbone_options *opts,
                                  grad_backbone **out) {
  *out = NULL;
  const char *name = arch->name ? arch->name : "custom";
  grad_status st = grad__backbone_options_check(opts, GRAD__EFFNET_LAYERS, name);
  if (st != GRAD_OK) return st;
  if (!(arch->width_mult >= 0.05 && arch->width_mult <= 8.0) ||
      !(arch->depth_mult >= 0.05 && arch->depth_mult <= 8.0) || !(arch->bn_eps > 0.0))
    return grad__fail(GRAD_E_INVALID_ARG,
                      "EfficientNet '%s': width %g, depth %g or BatchNorm eps %g out of range",
                      name, arch->width_mult, arch->depth_mult, arch->bn_eps);
  grad_backbone *bb = grad__calloc(1, sizeof *bb);
  grad__effnet *net = bb ? grad__calloc(1, sizeof *net) : NULL;
  if (!net) {
    grad__free(bb);
    return grad__fail(GRAD_E_NOMEM, "out of memory creating a backbone");
  }
  bb->effnet = net;
  net->arch = *arch;
  snprintf(net->arch_name, sizeof net->arch_name, "%s", name);
  net->arch.name = net->arch_name;
  snprintf(bb->arch_name, sizeof bb->arch_name, "%s", name);
  bb->layers = opts->layers;
  bb->input_size = opts->input_size;
  bb->output_stride = opts->output_stride;
  for (int k = 1; k <= GRAD__EFFNET_LAYERS; k++)
    if (opts->layers & GRAD_BACKBONE_LAYER(k)) bb->last_stage = k;
  net->last_stage = grad__effnet_layer_stage(bb->last_stage);

  int blocks = 0;
  for (int s = 1; s <= net->last_stage; s++)
    blocks += round_repeats(base_stages[s - 1].repeats, arch->depth_mult);
  net->blocks = grad__calloc((size_t)blocks, sizeof *net->blocks);
  net->convs = grad__calloc(1 + 5 * (size_t)blocks, sizeof *net->convs);
  if (!net->blocks || !net->convs) {
    grad_backbone_free(bb);
    return grad__fail(GRAD_E_NOMEM, "out of memory creating a backbone");
  }
  build(net);
  /* Layer channels of the full network, whether built or not. */
  for (int k = 1; k <= GRAD__EFFNET_LAYERS; k++) {
    int s = grad__effnet_layer_stage(k);
    bb->stage_channels[k] = round_channels(base_stages[s - 1].channels, arch->width_mult);
    bb->stage_size[k] = grad__effnet_map_size(bb->input_size, 1 << k);
    if (bb->layers & GRAD_BACKBONE_LAYER(k)) bb->feature_channels += bb->stage_channels[k];
  }
  bb->stage_size[0] = bb->stage_size[1];
  bb->feature_size = grad__effnet_map_size(bb->input_size, bb->output_stride);

  for (int i = 0; i < net->conv_count; i++) bb->storage_floats += conv_floats(&net->convs[i]);
  grad_status alloc = grad__bb_storage_alloc(bb);
  if (alloc != GRAD_OK) {
    grad_backbone_free(bb);
    return alloc;
  }
  float *cursor = bb->storage;
  for (int i = 0; i < net->conv_count; i++) {
    grad__effnet_conv *c = &net->convs[i];
    c->weight = cursor;
    c->bias = cursor + (size_t)c->cout * c->cin * c->kernel * c->kernel;
    cursor = c->bias + c->cout;
  }
  *out = bb;
  return GRAD_OK;
}

grad_status grad__effnet_create(const grad__effnet_arch *arch, const grad_backbone_options *opts,
                                grad_backbone **out) {
  grad_backbone *bb = NULL;
  grad_status st = build_backbone(arch, opts, &bb);
  if (st != GRAD_OK) return st;
  return grad__backbone_fill(bb, opts, grad__effnet_load_file, grad__effnet_init_random, out);
}

/* Rebuilds the structure for a model file (weights read by the caller). */
grad_status grad__effnet_build(const grad__effnet_arch *arch, const grad_backbone_options *opts,
                               grad_backbone **out) {
  return build_backbone(arch, opts, out);
}

void grad__effnet_free(grad__effnet *net) {
  if (!net) return;
  grad__free(net->convs);
  grad__free(net->blocks);
  grad__free(net);
}
