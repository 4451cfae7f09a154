/*
 * EfficientNet weights: torchvision's seeded initialisation, loading a
 * state dict of either layout with BatchNorm folded in, and storing /
 * rebuilding the folded network inside a model file.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "efficientnet_internal.h"
#include "rng.h"

static size_t weight_count(const grad__effnet_conv *c) {
  return (size_t)c->cout * c->cin * c->kernel * c->kernel;
}

/*
 * torchvision's EfficientNet.__init__: every Conv2d kaiming_normal_
 * (fan_out = Cout * K * K, also for depthwise ones), N(0, 2 / fan_out),
 * biases zero; BatchNorm weight 1, bias 0, mean 0, var 1 (folded: the
 * weights scaled by 1 / sqrt(1 + eps)). Drawn in the conv list's order.
 */
grad_status grad__effnet_init_random(grad_backbone *bb, uint64_t seed) {
  const grad__effnet *net = bb->effnet;
  grad__rng rng;
  grad__rng_seed(&rng, seed);
  const double scale = 1.0 / sqrt(1.0 + net->arch.bn_eps);
  for (int i = 0; i < net->conv_count; i++) {
    grad__effnet_conv *c = &net->convs[i];
    double std = sqrt(2.0 / ((double)c->cout * c->kernel * c->kernel));
    grad__rng_fill_normal(&rng, c->weight, weight_count(c), 0.0, std);
    if (c->bn[0])
      for (size_t j = 0; j < weight_count(c); j++) c->weight[j] = (float)(c->weight[j] * scale);
    memset(c->bias, 0, sizeof(float) * (size_t)c->cout);
  }
  return GRAD_OK;
}

grad_status grad__effnet_load_file(grad_backbone *bb, const grad__st_file *file) {
  const grad__effnet *net = bb->effnet;
  grad_status st = grad__bb_check_file_arch(bb, file);
  if (st != GRAD_OK) return st;
  int channels = 0;
  for (int i = 0; i < net->conv_count; i++)
    if (net->convs[i].cout > channels) channels = net->convs[i].cout;
  float *scratch = grad__malloc_array(4 * (size_t)channels, sizeof(float));
  if (!scratch) return grad__fail(GRAD_E_NOMEM, "out of memory loading %s", grad__st_path(file));
  for (int i = 0; st == GRAD_OK && i < net->conv_count; i++) {
    grad__effnet_conv *c = &net->convs[i];
    st = grad__bb_get_conv(file, "", c->name, c->bn, c->cout, c->cin, c->kernel,
                           net->arch.bn_eps, c->weight, c->bias, scratch);
  }
  grad__free(scratch);
  return st == GRAD_OK ? st : grad__bb_load_failed(st, file);
}

/* ---- Model files ---------------------------------------------------------- */

grad_status grad__effnet_write(const grad_backbone *bb, grad__st_writer *w, const char *prefix) {
  const grad__effnet *net = bb->effnet;
  char number[64];
  grad_status st = grad__bb_put_meta(w, prefix, "family", "efficientnet");
  if (st == GRAD_OK) st = grad__bb_put_meta(w, prefix, "arch", bb->arch_name);
  snprintf(number, sizeof number, "%.17g", net->arch.width_mult);
  if (st == GRAD_OK) st = grad__bb_put_meta(w, prefix, "width_mult", number);
  snprintf(number, sizeof number, "%.17g", net->arch.depth_mult);
  if (st == GRAD_OK) st = grad__bb_put_meta(w, prefix, "depth_mult", number);
  if (st == GRAD_OK)
    st = grad__bb_put_meta(w, prefix, "layout",
                           net->arch.layout == GRAD__EFFNET_SAME ? "same" : "torchvision");
  if (st == GRAD_OK) st = grad__bb_put_common(bb, w, prefix, GRAD__EFFNET_LAYERS);
  for (int i = 0; st == GRAD_OK && i < net->conv_count; i++) {
    const grad__effnet_conv *c = &net->convs[i];
    st = grad__bb_put_conv(w, prefix, c->name, c->cout, c->cin, c->kernel, c->weight, c->bias);
  }
  return st;
}

static const char *meta(const grad__st_file *f, const char *prefix, const char *key) {
  char name[256];
  snprintf(name, sizeof name, "%s%s", prefix, key);
  return grad__st_meta(f, name);
}

/* A metadata number in [lo, hi]; GRAD_E_MISSING / GRAD_E_FORMAT naming it. */
static grad_status meta_number(const grad__st_file *f, const char *prefix, const char *key,
                               double lo, double hi, double *out) {
  const char *text = meta(f, prefix, key);
  if (!text)
    return grad__fail(GRAD_E_MISSING, "%s: metadata key '%s%s' is missing", grad__st_path(f),
                      prefix, key);
  char *end = NULL;
  double v = strtod(text, &end);
  if (end == text || *end || !(v >= lo && v <= hi))
    return grad__fail(GRAD_E_FORMAT, "%s: metadata '%s%s' = '%s' is not valid", grad__st_path(f),
                      prefix, key, text);
  *out = v;
  return GRAD_OK;
}

grad_status grad__effnet_read(const grad__st_file *f, const char *prefix, grad_backbone **out) {
  *out = NULL;
  const char *arch_name = meta(f, prefix, "arch");
  const char *layout = meta(f, prefix, "layout");
  const char *layers = meta(f, prefix, "layers");
  if (!arch_name || !layout || !layers)
    return grad__fail(GRAD_E_MISSING, "%s: metadata key '%s%s' is missing", grad__st_path(f),
                      prefix, !arch_name ? "arch" : !layout ? "layout" : "layers");
  grad__effnet_arch arch = {arch_name, 0.0, 0.0, GRAD__EFFNET_TORCHVISION, 1e-3};
  if (!strcmp(layout, "same")) arch.layout = GRAD__EFFNET_SAME;
  else if (strcmp(layout, "torchvision"))
    return grad__fail(GRAD_E_FORMAT, "%s: metadata '%slayout' = '%s' is not valid",
                      grad__st_path(f), prefix, layout);
  double size = 0, stride = 0;
  grad_status st = meta_number(f, prefix, "width_mult", 0.05, 8.0, &arch.width_mult);
  if (st == GRAD_OK) st = meta_number(f, prefix, "depth_mult", 0.05, 8.0, &arch.depth_mult);
  if (st == GRAD_OK) st = meta_number(f, prefix, "input_size", 32, 4096, &size);
  if (st == GRAD_OK) st = meta_number(f, prefix, "output_stride", 4, 32, &stride);
  if (st != GRAD_OK) return st;
  grad_backbone_options opts;
  grad_backbone_options_init(&opts, sizeof opts);
  opts.layers = 0;
  for (const char *p = layers; *p; p++) {
    if (*p >= '1' && *p <= '5') opts.layers |= GRAD_BACKBONE_LAYER(*p - '0');
    else if (*p != ',')
      return grad__fail(GRAD_E_FORMAT, "%s: metadata '%slayers' = '%s' is not valid",
                        grad__st_path(f), prefix, layers);
  }
  opts.input_size = (int)size;
  opts.output_stride = (int)stride;
  grad_backbone *bb = NULL;
  st = grad__effnet_build(&arch, &opts, &bb);
  if (st != GRAD_OK) return grad__fail_context(st, "%s", grad__st_path(f));
  const grad__effnet *net = bb->effnet;
  for (int i = 0; st == GRAD_OK && i < net->conv_count; i++) {
    grad__effnet_conv *c = &net->convs[i];
    st = grad__bb_get_conv(f, prefix, c->name, NULL, c->cout, c->cin, c->kernel, 0.0, c->weight,
                           c->bias, NULL);
  }
  if (st != GRAD_OK) {
    grad_backbone_free(bb);
    return grad__fail_context(st, "backbone in %s", grad__st_path(f));
  }
  const char *source = meta(f, prefix, "source");
  snprintf(bb->source, sizeof bb->source, "model file (%s)", source ? source : "unknown weights");
  *out = bb;
  return GRAD_OK;
}
