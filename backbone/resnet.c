/*
 * The ResNet/WideResNet architectures (torchvision's definitions), building
 * the network for a descriptor, the handle's life cycle and its getters.
 */
#include <stdio.h>
#include <string.h>

#include "backbone_internal.h"
#include "efficientnet_internal.h"
#include "dnnl_engine_internal.h"

static const grad__resnet_arch arch_table[] = {
  {"resnet18", false, {2, 2, 2, 2}, 64},
  {"resnet34", false, {3, 4, 6, 3}, 64},
  {"resnet50", true, {3, 4, 6, 3}, 64},
  {"resnet101", true, {3, 4, 23, 3}, 64},
  {"wide_resnet50_2", true, {3, 4, 6, 3}, 128},
  {"wide_resnet101_2", true, {3, 4, 23, 3}, 128},
};

const grad__resnet_arch *grad__resnet_arch_find(const char *name) {
  if (!name) return NULL;
  for (size_t i = 0; i < sizeof arch_table / sizeof arch_table[0]; i++)
    if (!strcmp(arch_table[i].name, name)) return &arch_table[i];
  return NULL;
}

enum { ARCH_COUNT = sizeof arch_table / sizeof arch_table[0] };

/* The ResNets, then the EfficientNets. */
const char *grad_backbone_arch_name(int index) {
  if (index < 0) return NULL;
  return index < ARCH_COUNT ? arch_table[index].name : grad__effnet_arch_name(index - ARCH_COUNT);
}

/* Output channels of stage k (1..4): torchvision's planes, times the
 * bottleneck expansion of 4 (the wide variants widen only the inside). */
static int stage_channels(const grad__resnet_arch *arch, int k) {
  return (64 << (k - 1)) * (arch->bottleneck ? 4 : 1);
}

grad_status grad__backbone_arch_unknown(const char *name) {
  char known[640] = "";
  for (int i = 0; grad_backbone_arch_name(i); i++) {
    if (i) strcat(known, ", ");
    strcat(known, grad_backbone_arch_name(i));
  }
  return grad__fail(GRAD_E_INVALID_ARG, "unknown backbone architecture '%s' (known: %s)",
                    name ? name : "(null)", known);
}

grad_status grad_backbone_arch_channels(const char *arch, unsigned layers, int *channels) {
  if (!channels) return grad__fail(GRAD_E_INVALID_ARG, "grad_backbone_arch_channels: channels is NULL");
  *channels = 0;
  const grad__effnet_arch *effnet = grad__effnet_arch_find(arch);
  if (effnet) return grad__effnet_arch_channels(effnet, layers, channels);
  const grad__resnet_arch *a = grad__resnet_arch_find(arch);
  if (!a) return grad__backbone_arch_unknown(arch);
  unsigned all = 0;
  for (int k = 1; k <= 4; k++) all |= GRAD_BACKBONE_LAYER(k);
  if (layers == 0 || (layers & ~all))
    return grad__fail(GRAD_E_INVALID_ARG, "grad_backbone_arch_channels: layers 0x%x: set bits "
                      "1..4 (layer1..layer4)", layers);
  for (int k = 1; k <= 4; k++)
    if (layers & GRAD_BACKBONE_LAYER(k)) *channels += stage_channels(a, k);
  return GRAD_OK;
}

static grad_status check_arch(const grad__resnet_arch *arch) {
  for (int k = 0; k < 4; k++)
    if (arch->blocks[k] < 1 || arch->blocks[k] > GRAD__BB_MAX_BLOCKS)
      return grad__fail(GRAD_E_INVALID_ARG, "architecture '%s': layer%d has %d blocks (1..%d)",
                        arch->name ? arch->name : "?", k + 1, arch->blocks[k],
                        GRAD__BB_MAX_BLOCKS);
  if (arch->bottleneck ? (arch->width_per_group < 1 || arch->width_per_group > 1024)
                       : arch->width_per_group != 64)
    return grad__fail(GRAD_E_INVALID_ARG, "architecture '%s': width_per_group %d not supported",
                      arch->name ? arch->name : "?", arch->width_per_group);
  return GRAD_OK;
}

/* Lays out one conv: its shape and names; weights are placed later. */
static void set_conv(grad__bb_conv *c, int cin, int cout, int k, int stride, const char *name,
                     const char *bn) {
  c->shape = (grad__conv){cin, cout, k, stride, k / 2};
  snprintf(c->name, sizeof c->name, "%s", name);
  snprintf(c->bn, sizeof c->bn, "%s", bn);
}

static size_t conv_floats(const grad__bb_conv *c) {
  const grad__conv *s = &c->shape;
  return (size_t)s->out_channels * s->in_channels * s->kernel * s->kernel + s->out_channels;
}

static void build_blocks(grad_backbone *bb) {
  const grad__resnet_arch *a = &bb->arch;
  int inplanes = 64, index = 0;
  char name[GRAD__BB_NAME], bn[GRAD__BB_NAME];
  for (int k = 1; k <= bb->last_stage; k++) {
    int planes = 64 << (k - 1);
    int out = a->bottleneck ? planes * 4 : planes;
    for (int b = 0; b < a->blocks[k - 1]; b++) {
      grad__bb_block *blk = &bb->blocks[index++];
      int stride = (k > 1 && b == 0) ? 2 : 1;
      blk->stage = k;
      blk->convs = a->bottleneck ? 3 : 2;
      /* torchvision: a BasicBlock strides its first 3x3, a Bottleneck its
       * 3x3 (the middle conv). */
      int width = a->bottleneck ? planes * a->width_per_group / 64 : planes;
      const int cin[3] = {inplanes, width, width};
      const int cout[3] = {width, a->bottleneck ? width : out, out};
      const int kern[3] = {a->bottleneck ? 1 : 3, 3, 1};
      const int str[3] = {a->bottleneck ? 1 : stride, a->bottleneck ? stride : 1, 1};
      for (int i = 0; i < blk->convs; i++) {
        snprintf(name, sizeof name, "layer%d.%d.conv%d", k, b, i + 1);
        snprintf(bn, sizeof bn, "layer%d.%d.bn%d", k, b, i + 1);
        set_conv(&blk->conv[i], cin[i], cout[i], kern[i], str[i], name, bn);
      }
      blk->downsample = b == 0 && (stride != 1 || inplanes != out);
      if (blk->downsample) {
        snprintf(name, sizeof name, "layer%d.%d.downsample.0", k, b);
        snprintf(bn, sizeof bn, "layer%d.%d.downsample.1", k, b);
        set_conv(&blk->down, inplanes, out, 1, stride, name, bn);
      }
      inplanes = out;
    }
  }
}

static grad_status place_weights(grad__bb_conv *c, void *ctx) {
  float **cursor = ctx;
  const grad__conv *s = &c->shape;
  c->weight = *cursor;
  c->bias = c->weight + (size_t)s->out_channels * s->in_channels * s->kernel * s->kernel;
  *cursor = c->bias + s->out_channels;
  return GRAD_OK;
}

static grad_status count_floats(grad__bb_conv *c, void *ctx) {
  *(size_t *)ctx += conv_floats(c);
  return GRAD_OK;
}

grad_status grad__backbone_each_conv(grad_backbone *bb, grad__bb_conv_fn fn, void *ctx) {
  grad_status st = fn(&bb->stem, ctx);
  for (int b = 0; st == GRAD_OK && b < bb->block_count; b++) {
    grad__bb_block *blk = &bb->blocks[b];
    for (int i = 0; st == GRAD_OK && i < blk->convs; i++) st = fn(&blk->conv[i], ctx);
    if (st == GRAD_OK && blk->downsample) st = fn(&blk->down, ctx);
  }
  return st;
}

grad_status grad__backbone_build(const grad__resnet_arch *arch, const grad_backbone_options *opts,
                                 grad_backbone **out) {
  *out = NULL;
  grad_status st = grad__backbone_options_check(opts, 4, arch->name ? arch->name : "custom");
  if (st == GRAD_OK) st = check_arch(arch);
  if (st != GRAD_OK) return st;
  grad_backbone *bb = grad__calloc(1, sizeof *bb);
  if (!bb) return grad__fail(GRAD_E_NOMEM, "out of memory creating a backbone");
  bb->arch = *arch;
  snprintf(bb->arch_name, sizeof bb->arch_name, "%s", arch->name ? arch->name : "custom");
  bb->arch.name = bb->arch_name;
  bb->layers = opts->layers;
  bb->input_size = opts->input_size;
  bb->output_stride = opts->output_stride;
  for (int k = 4; k >= 1; k--)
    if (opts->layers & GRAD_BACKBONE_LAYER(k)) {
      bb->last_stage = k;
      break;
    }

  set_conv(&bb->stem, 3, 64, 7, 2, "conv1", "bn1");
  bb->stage_size[0] = grad__conv_out_size(&bb->stem.shape, bb->input_size);
  const grad__conv pool = {64, 64, 3, 2, 1};
  bb->stage_size[1] = grad__conv_out_size(&pool, bb->stage_size[0]);
  const grad__conv down = {1, 1, 3, 2, 1};
  for (int k = 2; k <= 4; k++)
    bb->stage_size[k] = grad__conv_out_size(&down, bb->stage_size[k - 1]);
  for (int k = 1; k <= 4; k++) bb->stage_channels[k] = stage_channels(arch, k);
  for (int k = 1; k <= 4; k++)
    if (bb->layers & GRAD_BACKBONE_LAYER(k)) bb->feature_channels += bb->stage_channels[k];
  int stride_stage = opts->output_stride == 4 ? 1 : opts->output_stride == 8 ? 2
                     : opts->output_stride == 16 ? 3 : 4;
  bb->feature_size = bb->stage_size[stride_stage];

  for (int k = 0; k < bb->last_stage; k++) bb->block_count += arch->blocks[k];
  bb->blocks = grad__calloc((size_t)bb->block_count, sizeof *bb->blocks);
  if (!bb->blocks) {
    grad_backbone_free(bb);
    return grad__fail(GRAD_E_NOMEM, "out of memory creating a backbone");
  }
  build_blocks(bb);
  (void)grad__backbone_each_conv(bb, count_floats, &bb->storage_floats);
  grad_status alloc = grad__bb_storage_alloc(bb);
  if (alloc != GRAD_OK) {
    grad_backbone_free(bb);
    return alloc;
  }
  float *cursor = bb->storage;
  (void)grad__backbone_each_conv(bb, place_weights, &cursor);
  bb->engine = grad__dnnl_available() ? GRAD_ENGINE_ONEDNN : GRAD_ENGINE_IM2COL;
  bb->precision = GRAD_PRECISION_FP32;
  st = grad__bb_dnnl_create(bb);
  if (st != GRAD_OK) {
    grad_backbone_free(bb);
    return st;
  }
  *out = bb;
  return GRAD_OK;
}

void grad_backbone_free(grad_backbone *bb) {
  if (!bb) return;
  grad__bb_dnnl_free(bb);
  grad__free(bb->storage);
  grad__free(bb->blocks);
  grad__effnet_free(bb->effnet);
  grad__free(bb);
}

int grad_backbone_feature_channels(const grad_backbone *bb) {
  return bb ? bb->feature_channels : 0;
}
int grad_backbone_feature_height(const grad_backbone *bb) { return bb ? bb->feature_size : 0; }
int grad_backbone_feature_width(const grad_backbone *bb) { return bb ? bb->feature_size : 0; }
int grad_backbone_input_size(const grad_backbone *bb) { return bb ? bb->input_size : 0; }
int grad_backbone_output_stride(const grad_backbone *bb) { return bb ? bb->output_stride : 0; }
unsigned grad_backbone_layers(const grad_backbone *bb) { return bb ? bb->layers : 0; }
const char *grad_backbone_arch(const grad_backbone *bb) { return bb ? bb->arch_name : ""; }
const char *grad_backbone_weights_source(const grad_backbone *bb) { return bb ? bb->source : ""; }

grad_status grad_backbone_compute_set(grad_backbone *bb, grad_engine engine,
                                      grad_precision precision) {
  if (!bb) return grad__fail(GRAD_E_INVALID_ARG, "grad_backbone_compute_set: bb is NULL");
  if (engine != GRAD_ENGINE_AUTO && engine != GRAD_ENGINE_ONEDNN && engine != GRAD_ENGINE_IM2COL)
    return grad__fail(GRAD_E_INVALID_ARG, "grad_backbone_compute_set: unknown engine %d",
                      (int)engine);
  if (precision != GRAD_PRECISION_FP32 && precision != GRAD_PRECISION_BF16)
    return grad__fail(GRAD_E_INVALID_ARG, "grad_backbone_compute_set: unknown precision %d",
                      (int)precision);
  if (bb->effnet) { /* its own native forward (efficientnet_forward.c), fp32 only */
    if (engine == GRAD_ENGINE_ONEDNN || precision != GRAD_PRECISION_FP32)
      return grad__fail(GRAD_E_UNSUPPORTED, "grad_backbone_compute_set: the EfficientNet "
                                            "backbone runs on its own kernels, in fp32 only");
    return GRAD_OK;
  }
  if (engine == GRAD_ENGINE_AUTO)
    engine = grad__dnnl_available() ? GRAD_ENGINE_ONEDNN : GRAD_ENGINE_IM2COL;
  if (engine == GRAD_ENGINE_ONEDNN && !grad__dnnl_available())
    return grad__fail(GRAD_E_UNSUPPORTED, "grad_backbone_compute_set: the oneDNN engine is not "
                                          "available (libgrad built without oneDNN)");
  if (precision == GRAD_PRECISION_BF16 && engine != GRAD_ENGINE_ONEDNN)
    return grad__fail(GRAD_E_UNSUPPORTED, "grad_backbone_compute_set: bf16 needs the oneDNN engine");
  if (precision == GRAD_PRECISION_BF16 && !grad__dnnl_bf16_native())
    return grad__fail(GRAD_E_UNSUPPORTED, "grad_backbone_compute_set: this CPU has no native bf16 "
                                          "(AVX512_BF16 or AMX; oneDNN dispatches to %s)",
                      grad__dnnl_isa_name());
  bb->engine = engine;
  bb->precision = precision;
  return GRAD_OK;
}

double grad_backbone_macs(const grad_backbone *bb) {
  if (!bb || bb->effnet) return 0.0;
  double macs = grad__conv_macs(&bb->stem.shape, bb->input_size, bb->input_size);
  int size = bb->stage_size[1];
  for (int b = 0; b < bb->block_count; b++) {
    const grad__bb_block *blk = &bb->blocks[b];
    int in = size;
    for (int i = 0; i < blk->convs; i++) {
      macs += grad__conv_macs(&blk->conv[i].shape, in, in);
      in = grad__conv_out_size(&blk->conv[i].shape, in);
    }
    if (blk->downsample) macs += grad__conv_macs(&blk->down.shape, size, size);
    size = in;
  }
  return macs;
}

grad_engine grad_backbone_engine(const grad_backbone *bb) {
  if (bb && bb->effnet) return GRAD_ENGINE_IM2COL; /* its own kernels: the portable kind */
  return bb ? bb->engine : GRAD_ENGINE_AUTO;
}
grad_precision grad_backbone_precision(const grad_backbone *bb) {
  return bb ? bb->precision : GRAD_PRECISION_FP32;
}

int grad_backbone_stage_channels(const grad_backbone *bb, int layer) {
  int last = bb && bb->effnet ? GRAD__EFFNET_LAYERS : 4;
  return bb && layer >= 1 && layer <= last ? bb->stage_channels[layer] : 0;
}

/* The end of every architecture's create: weights from a file or drawn from
 * a seed, the source named, the backbone freed on failure. It reaches the
 * loaders only through the pointers it is given, so no call cycle. */
grad_status grad__backbone_fill(grad_backbone *bb, const grad_backbone_options *opts,
                                grad__bb_load_fn load, grad__bb_init_fn init, grad_backbone **out) {
  grad_status st;
  if (opts->weights_path) {
    grad__st_file *file = NULL;
    st = grad__st_open(opts->weights_path, &file);
    if (st == GRAD_OK) st = load(bb, file);
    if (st == GRAD_OK) {
      const char *source = grad__st_meta(file, "source");
      const char *base = strrchr(opts->weights_path, '/');
      base = base ? base + 1 : opts->weights_path;
      if (source)
        snprintf(bb->source, sizeof bb->source, "file %s (source=%s)", base, source);
      else
        snprintf(bb->source, sizeof bb->source, "file %s", base);
    }
    grad__st_close(file);
  } else {
    st = init(bb, opts->random_seed);
    snprintf(bb->source, sizeof bb->source, "random (seed %llu)",
             (unsigned long long)opts->random_seed);
  }
  if (st != GRAD_OK) {
    grad_backbone_free(bb);
    return st;
  }
  *out = bb;
  return GRAD_OK;
}
