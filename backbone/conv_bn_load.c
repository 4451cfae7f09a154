/*
 * Reading a weights or model file, for ResNet and EfficientNet alike: one
 * convolution's weight, then its BatchNorm folded in or its own bias; the
 * check of the file's architecture and the context of an error.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "backbone_internal.h"

grad_status grad__bb_storage_alloc(grad_backbone *bb) {
  bb->storage = grad__calloc(bb->storage_floats, sizeof(float));
  if (bb->storage) return GRAD_OK;
  return grad__fail(GRAD_E_NOMEM, "out of memory allocating %zu MiB of backbone weights",
                    bb->storage_floats * sizeof(float) >> 20);
}

static grad_status read_tensor(const grad__st_file *f, const char *prefix, const char *module,
                               const char *what, int ndim, const int64_t *shape, float *out) {
  char name[GRAD__BB_NAME + 128];
  snprintf(name, sizeof name, "%s%s.%s", prefix, module, what);
  return grad__st_read_f32(f, name, ndim, shape, true, out);
}

grad_status grad__bb_get_conv(const grad__st_file *f, const char *prefix, const char *name,
                              const char *bn, int cout, int cin, int kernel, double eps,
                              float *weight, float *bias, float *bn_scratch) {
  const int64_t wshape[4] = {cout, cin, kernel, kernel};
  const int64_t cshape[1] = {cout};
  grad_status st = read_tensor(f, prefix, name, "weight", 4, wshape, weight);
  if (st != GRAD_OK) return st;
  if (!bn || !bn[0]) return read_tensor(f, prefix, name, "bias", 1, cshape, bias);
  static const char *const parts[4] = {"weight", "bias", "running_mean", "running_var"};
  float *p[4];
  for (int i = 0; i < 4; i++) {
    p[i] = bn_scratch + (size_t)i * cout;
    st = read_tensor(f, prefix, bn, parts[i], 1, cshape, p[i]);
    if (st != GRAD_OK) return st;
  }
  for (int o = 0; o < cout; o++)
    if (!((double)p[3][o] + eps > 0.0))
      return grad__fail(GRAD_E_NUMERIC,
                        "tensor '%s.running_var' has %g at index %d: a variance must be >= 0", bn,
                        p[3][o], o);
  /* w <- w * gamma / sqrt(var + eps), b <- beta - mean * gamma / sqrt(var + eps) */
  const size_t per_out = (size_t)cin * kernel * kernel;
  for (int o = 0; o < cout; o++) {
    double scale = p[0][o] / sqrt((double)p[3][o] + eps);
    float *w = weight + o * per_out;
    for (size_t j = 0; j < per_out; j++) w[j] = (float)(w[j] * scale);
    bias[o] = (float)(p[1][o] - p[2][o] * scale);
  }
  return GRAD_OK;
}

grad_status grad__bb_check_file_arch(const grad_backbone *bb, const grad__st_file *file) {
  const char *arch = grad__st_meta(file, "arch");
  if (arch && strcmp(arch, bb->arch_name))
    return grad__fail(GRAD_E_INVALID_ARG,
                      "weights file %s holds architecture '%s', not the requested '%s'",
                      grad__st_path(file), arch, bb->arch_name);
  return GRAD_OK;
}

grad_status grad__bb_load_failed(grad_status st, const grad__st_file *file) {
  const char *path = grad__st_path(file);
  /* The reader's messages mostly name the file already. */
  if (strstr(grad_last_error(), path)) return grad__fail_context(st, "backbone weights");
  return grad__fail_context(st, "backbone weights %s", path);
}
