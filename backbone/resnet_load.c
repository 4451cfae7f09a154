/*
 * Backbone weights: torchvision's seeded initialisation, loading a
 * torchvision state dict with BatchNorm folded in, and storing/rebuilding
 * the folded network inside a model file; grad_backbone_create, which
 * builds the network (resnet.c) and then fills it here, so the calls run
 * one way only (this file on resnet.c).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backbone_internal.h"
#include "efficientnet_internal.h"
#include "rng.h"

/* torchvision's BatchNorm2d default. */
static const double bn_eps = 1e-5;

static size_t weight_count(const grad__conv *s) {
  return (size_t)s->out_channels * s->in_channels * s->kernel * s->kernel;
}

/*
 * torchvision's ResNet.__init__: kaiming_normal_(mode="fan_out",
 * nonlinearity="relu"), i.e. N(0, 2 / (Cout * K * K)), for every conv in
 * state-dict order; BatchNorm weight 1, bias 0, running mean 0, var 1. The
 * stream depends only on the convs before, so the stages kept do not change
 * the weights of earlier ones.
 */
typedef struct random_ctx {
  grad__rng rng;
} random_ctx;

static grad_status draw_conv(grad__bb_conv *c, void *ctx) {
  random_ctx *r = ctx;
  const grad__conv *s = &c->shape;
  double std = sqrt(2.0 / ((double)s->out_channels * s->kernel * s->kernel));
  grad__rng_fill_normal(&r->rng, c->weight, weight_count(s), 0.0, std);
  double scale = 1.0 / sqrt(1.0 + bn_eps);
  for (size_t j = 0; j < weight_count(s); j++) c->weight[j] = (float)(c->weight[j] * scale);
  memset(c->bias, 0, sizeof(float) * (size_t)s->out_channels);
  return GRAD_OK;
}

grad_status grad__backbone_init_random(grad_backbone *bb, uint64_t seed) {
  random_ctx ctx;
  grad__rng_seed(&ctx.rng, seed);
  return grad__backbone_each_conv(bb, draw_conv, &ctx);
}

typedef struct load_ctx {
  const grad__st_file *file;
  const char *prefix;  /* model files: "backbone." */
  float *bn;           /* 4 x max channels */
} load_ctx;

static grad_status load_conv(grad__bb_conv *c, void *ctx) {
  const load_ctx *l = ctx;
  const grad__conv *s = &c->shape;
  return grad__bb_get_conv(l->file, l->prefix, c->name, c->bn, s->out_channels, s->in_channels,
                           s->kernel, bn_eps, c->weight, c->bias, l->bn);
}

static grad_status max_channels(grad__bb_conv *c, void *ctx) {
  int *max = ctx;
  if (c->shape.out_channels > *max) *max = c->shape.out_channels;
  return GRAD_OK;
}

grad_status grad__backbone_load_file(grad_backbone *bb, const grad__st_file *file) {
  grad_status st = grad__bb_check_file_arch(bb, file);
  if (st != GRAD_OK) return st;
  int channels = 0;
  (void)grad__backbone_each_conv(bb, max_channels, &channels);
  load_ctx ctx = {file, "", grad__malloc_array(4 * (size_t)channels, sizeof(float))};
  if (!ctx.bn) return grad__fail(GRAD_E_NOMEM, "out of memory loading %s", grad__st_path(file));
  st = grad__backbone_each_conv(bb, load_conv, &ctx);
  grad__free(ctx.bn);
  return st == GRAD_OK ? st : grad__bb_load_failed(st, file);
}

/* ---- Model files ---------------------------------------------------------- */

typedef struct write_ctx {
  grad__st_writer *writer;
  const char *prefix;
} write_ctx;

static grad_status write_conv(grad__bb_conv *c, void *ctx) {
  const write_ctx *wc = ctx;
  const grad__conv *s = &c->shape;
  return grad__bb_put_conv(wc->writer, wc->prefix, c->name, s->out_channels, s->in_channels,
                           s->kernel, c->weight, c->bias);
}

grad_status grad__bb_put_meta(grad__st_writer *w, const char *prefix, const char *key,
                              const char *value) {
  char name[256];
  snprintf(name, sizeof name, "%s%s", prefix, key);
  return grad__st_writer_meta(w, name, value);
}

grad_status grad__bb_put_common(const grad_backbone *bb, grad__st_writer *w, const char *prefix,
                                int max_layer) {
  char layers[16] = "", number[32];
  for (int k = 1; k <= max_layer; k++)
    if (bb->layers & GRAD_BACKBONE_LAYER(k))
      snprintf(layers + strlen(layers), sizeof layers - strlen(layers), "%s%d",
               layers[0] ? "," : "", k);
  grad_status st = grad__bb_put_meta(w, prefix, "layers", layers);
  snprintf(number, sizeof number, "%d", bb->input_size);
  if (st == GRAD_OK) st = grad__bb_put_meta(w, prefix, "input_size", number);
  snprintf(number, sizeof number, "%d", bb->output_stride);
  if (st == GRAD_OK) st = grad__bb_put_meta(w, prefix, "output_stride", number);
  if (st == GRAD_OK) st = grad__bb_put_meta(w, prefix, "source", bb->source);
  return st;
}

grad_status grad__bb_put_conv(grad__st_writer *w, const char *prefix, const char *name, int cout,
                              int cin, int kernel, const float *weight, const float *bias) {
  const int64_t wshape[4] = {cout, cin, kernel, kernel};
  const int64_t cshape[1] = {cout};
  char full[GRAD__BB_NAME + 128];
  snprintf(full, sizeof full, "%s%s.weight", prefix, name);
  grad_status st = grad__st_writer_add(w, full, 4, wshape, weight);
  if (st != GRAD_OK) return st;
  snprintf(full, sizeof full, "%s%s.bias", prefix, name);
  return grad__st_writer_add(w, full, 1, cshape, bias);
}

grad_status grad__backbone_write(const grad_backbone *bb, grad__st_writer *w, const char *prefix) {
  if (!bb || !w) return grad__fail(GRAD_E_INVALID_ARG, "grad__backbone_write: NULL argument");
  if (!prefix) prefix = "";
  if (bb->effnet) return grad__effnet_write(bb, w, prefix);
  char blocks[64], number[32];
  snprintf(blocks, sizeof blocks, "%d,%d,%d,%d", bb->arch.blocks[0], bb->arch.blocks[1],
           bb->arch.blocks[2], bb->arch.blocks[3]);
  grad_status st = grad__bb_put_meta(w, prefix, "arch", bb->arch_name);
  if (st == GRAD_OK)
    st = grad__bb_put_meta(w, prefix, "bottleneck", bb->arch.bottleneck ? "1" : "0");
  if (st == GRAD_OK) st = grad__bb_put_meta(w, prefix, "blocks", blocks);
  snprintf(number, sizeof number, "%d", bb->arch.width_per_group);
  if (st == GRAD_OK) st = grad__bb_put_meta(w, prefix, "width_per_group", number);
  if (st == GRAD_OK) st = grad__bb_put_common(bb, w, prefix, 4);
  write_ctx ctx = {w, prefix};
  /* each_conv only walks the structure; the weights are not modified. */
  if (st == GRAD_OK) st = grad__backbone_each_conv((grad_backbone *)bb, write_conv, &ctx);
  return st;
}

/* Parses "a,b,c" into at most max ints in [lo, hi]; the count, or -1. */
static int parse_ints(const char *text, int *out, int max, long lo, long hi) {
  int count = 0;
  const char *p = text;
  while (*p) {
    char *end = NULL;
    errno = 0;
    long v = strtol(p, &end, 10);
    if (errno || end == p || v < lo || v > hi || count == max) return -1;
    out[count++] = (int)v;
    if (*end == ',') end++;
    else if (*end) return -1;
    p = end;
  }
  return count;
}

static grad_status meta_ints(const grad__st_file *f, const char *prefix, const char *key,
                             int *out, int want, long lo, long hi, int *got) {
  char name[256];
  snprintf(name, sizeof name, "%s%s", prefix, key);
  const char *text = grad__st_meta(f, name);
  if (!text)
    return grad__fail(GRAD_E_MISSING, "%s: metadata key '%s' is missing", grad__st_path(f), name);
  int n = parse_ints(text, out, want, lo, hi);
  if (n < 1 || (got == NULL && n != want))
    return grad__fail(GRAD_E_FORMAT, "%s: metadata '%s' = '%s' is not valid", grad__st_path(f),
                      name, text);
  if (got) *got = n;
  return GRAD_OK;
}

static grad_status read_folded(grad__bb_conv *c, void *ctx) {
  const load_ctx *l = ctx;
  const grad__conv *s = &c->shape;
  return grad__bb_get_conv(l->file, l->prefix, c->name, NULL, s->out_channels, s->in_channels,
                           s->kernel, bn_eps, c->weight, c->bias, NULL);
}

grad_status grad__backbone_read(const grad__st_file *f, const char *prefix, grad_backbone **out) {
  if (!out) return grad__fail(GRAD_E_INVALID_ARG, "grad__backbone_read: out is NULL");
  *out = NULL;
  if (!f) return grad__fail(GRAD_E_INVALID_ARG, "grad__backbone_read: file is NULL");
  if (!prefix) prefix = "";
  char key[256];
  snprintf(key, sizeof key, "%sfamily", prefix);
  const char *family = grad__st_meta(f, key);
  if (family && !strcmp(family, "efficientnet")) return grad__effnet_read(f, prefix, out);
  snprintf(key, sizeof key, "%sarch", prefix);
  const char *arch_name = grad__st_meta(f, key);
  if (!arch_name)
    return grad__fail(GRAD_E_MISSING, "%s: metadata key '%s' is missing", grad__st_path(f), key);
  grad__resnet_arch arch = {arch_name, false, {0}, 0};
  int flag = 0, layers[4], count = 0, size = 0, stride = 0;
  grad_status st = meta_ints(f, prefix, "bottleneck", &flag, 1, 0, 1, NULL);
  if (st == GRAD_OK)
    st = meta_ints(f, prefix, "blocks", arch.blocks, 4, 1, GRAD__BB_MAX_BLOCKS, NULL);
  if (st == GRAD_OK)
    st = meta_ints(f, prefix, "width_per_group", &arch.width_per_group, 1, 1, 1024, NULL);
  if (st == GRAD_OK) st = meta_ints(f, prefix, "layers", layers, 4, 1, 4, &count);
  if (st == GRAD_OK) st = meta_ints(f, prefix, "input_size", &size, 1, 32, 4096, NULL);
  if (st == GRAD_OK) st = meta_ints(f, prefix, "output_stride", &stride, 1, 4, 32, NULL);
  if (st != GRAD_OK) return st;
  arch.bottleneck = flag != 0;
  /* A known name must describe the structure the weights have (custom
   * structures, built through the internal API, carry their own names). */
  const grad__resnet_arch *named = grad__resnet_arch_find(arch_name);
  if (named && (named->bottleneck != arch.bottleneck ||
                named->width_per_group != arch.width_per_group ||
                memcmp(named->blocks, arch.blocks, sizeof arch.blocks) != 0))
    return grad__fail(GRAD_E_FORMAT,
                      "%s: metadata \"%s\" = \"%s\" does not match the stored structure "
                      "(%s blocks %d,%d,%d,%d, width %d per group)",
                      grad__st_path(f), key, arch_name, arch.bottleneck ? "bottleneck" : "basic",
                      arch.blocks[0], arch.blocks[1], arch.blocks[2], arch.blocks[3],
                      arch.width_per_group);
  grad_backbone_options opts;
  grad_backbone_options_init(&opts, sizeof opts);
  opts.layers = 0;
  for (int i = 0; i < count; i++) opts.layers |= GRAD_BACKBONE_LAYER(layers[i]);
  opts.input_size = size;
  opts.output_stride = stride;
  grad_backbone *bb = NULL;
  st = grad__backbone_build(&arch, &opts, &bb);
  if (st != GRAD_OK) return grad__fail_context(st, "%s", grad__st_path(f));
  load_ctx ctx = {f, prefix, NULL};
  st = grad__backbone_each_conv(bb, read_folded, &ctx);
  if (st != GRAD_OK) {
    grad_backbone_free(bb);
    return grad__fail_context(st, "backbone in %s", grad__st_path(f));
  }
  snprintf(key, sizeof key, "%ssource", prefix);
  const char *source = grad__st_meta(f, key);
  snprintf(bb->source, sizeof bb->source, "model file (%s)", source ? source : "unknown weights");
  *out = bb;
  return GRAD_OK;
}

/* ---- grad_backbone_create: built by resnet.c, then filled here ------------- */

grad_status grad__backbone_create_arch(const grad__resnet_arch *arch,
                                       const grad_backbone_options *opts, grad_backbone **out) {
  grad_backbone *bb = NULL;
  grad_status st = grad__backbone_build(arch, opts, &bb);
  if (st != GRAD_OK) return st;
  return grad__backbone_fill(bb, opts, grad__backbone_load_file, grad__backbone_init_random, out);
}

grad_status grad_backbone_create(const grad_backbone_options *opts, grad_backbone **out) {
  if (!out) return grad__fail(GRAD_E_INVALID_ARG, "grad_backbone_create: out is NULL");
  *out = NULL;
  if (!opts) return grad__fail(GRAD_E_INVALID_ARG, "grad_backbone_create: opts is NULL");
  grad_backbone_options resolved;
  grad_status st = grad__backbone_options_resolve(opts, &resolved);
  if (st != GRAD_OK) return st;
  opts = &resolved;
  const grad__effnet_arch *effnet = grad__effnet_arch_find(opts->arch);
  if (effnet) return grad__effnet_create(effnet, opts, out);
  const grad__resnet_arch *arch = grad__resnet_arch_find(opts->arch);
  if (!arch) return grad__backbone_arch_unknown(opts->arch);
  return grad__backbone_create_arch(arch, opts, out);
}
