/* AdamW, StepLR and total-norm gradient clipping, matching PyTorch 1.13. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "optim.h"

struct grad__adamw {
  grad__param **params;
  size_t count;
  float *exp_avg;     /* all parameters' first moments, back to back */
  float *exp_avg_sq;  /* and second moments, same layout */
  size_t total;
  int64_t step;
  grad__adamw_config config;
};

void grad__adamw_config_init(grad__adamw_config *config) {
  config->lr[GRAD__PARAM_GRID] = 0.1;
  config->lr[GRAD__PARAM_NET] = 1e-3;
  config->beta1 = 0.9;
  config->beta2 = 0.999;
  config->eps = 1e-8;
  config->weight_decay = 0.01;
}

grad_status grad__adamw_create(grad__param *const *params, size_t count,
                               const grad__adamw_config *config, grad__adamw **out) {
  if (!out) return grad__fail(GRAD_E_INVALID_ARG, "grad__adamw_create: out is NULL");
  *out = NULL;
  if ((!params && count) || !config)
    return grad__fail(GRAD_E_INVALID_ARG, "grad__adamw_create: params or config is NULL");
  size_t total = 0;
  for (size_t i = 0; i < count; i++) {
    if (!params[i] || !params[i]->value || !params[i]->grad)
      return grad__fail(GRAD_E_INVALID_ARG,
                        "grad__adamw_create: parameter %zu (%s) has no value or grad", i,
                        params[i] && params[i]->name ? params[i]->name : "?");
    if ((unsigned)params[i]->group > GRAD__PARAM_NET)
      return grad__fail(GRAD_E_INVALID_ARG, "grad__adamw_create: parameter %s has group %d",
                        params[i]->name, (int)params[i]->group);
    total += params[i]->count;
  }
  grad__adamw *opt = grad__calloc(1, sizeof *opt);
  if (!opt) return grad__fail(GRAD_E_NOMEM, "out of memory creating the optimiser");
  opt->count = count;
  opt->total = total;
  opt->config = *config;
  opt->params = grad__malloc_array(count ? count : 1, sizeof *opt->params);
  opt->exp_avg = grad__calloc(total ? total : 1, sizeof(float));
  opt->exp_avg_sq = grad__calloc(total ? total : 1, sizeof(float));
  if (!opt->params || !opt->exp_avg || !opt->exp_avg_sq) {
    grad__adamw_free(opt);
    return grad__fail(GRAD_E_NOMEM, "out of memory for the optimiser state (%zu values)", total);
  }
  if (count) memcpy(opt->params, params, count * sizeof *params);
  *out = opt;
  return GRAD_OK;
}

void grad__adamw_free(grad__adamw *opt) {
  if (!opt) return;
  grad__free(opt->params);
  grad__free(opt->exp_avg);
  grad__free(opt->exp_avg_sq);
  grad__free(opt);
}

void grad__adamw_set_lr(grad__adamw *opt, grad__param_group group, double lr) {
  opt->config.lr[group] = lr;
}

double grad__adamw_lr(const grad__adamw *opt, grad__param_group group) {
  return opt->config.lr[group];
}

int64_t grad__adamw_steps(const grad__adamw *opt) { return opt->step; }

/* The scalars are formed in double, as Python computes them, and each
 * enters the float32 arithmetic rounded once, as ATen's CPU kernels do. */
static void step_tensor(const grad__adamw_config *c, double lr, double bc1, double bc2_sqrt,
                        float *p, const float *g, float *m, float *v, size_t count) {
  const float decay = (float)(1.0 - lr * c->weight_decay);
  const float b1 = (float)c->beta1, one_minus_b1 = (float)(1.0 - c->beta1);
  const float b2 = (float)c->beta2, one_minus_b2 = (float)(1.0 - c->beta2);
  const float bc2 = (float)bc2_sqrt, eps = (float)c->eps;
  const float neg_step_size = (float)(-(lr / bc1));
  for (size_t i = 0; i < count; i++) {
    float pi = p[i] * decay;
    float mi = m[i] * b1 + one_minus_b1 * g[i];
    float vi = v[i] * b2 + one_minus_b2 * g[i] * g[i];
    float denom = sqrtf(vi) / bc2 + eps;
    p[i] = pi + neg_step_size * mi / denom;
    m[i] = mi;
    v[i] = vi;
  }
}

void grad__adamw_step(grad__adamw *opt) {
  opt->step++;
  const grad__adamw_config *c = &opt->config;
  double bc1 = 1.0 - pow(c->beta1, (double)opt->step);
  double bc2_sqrt = sqrt(1.0 - pow(c->beta2, (double)opt->step));
  size_t offset = 0;
  for (size_t i = 0; i < opt->count; i++) {
    grad__param *p = opt->params[i];
    step_tensor(c, c->lr[p->group], bc1, bc2_sqrt, p->value, p->grad, opt->exp_avg + offset,
                opt->exp_avg_sq + offset, p->count);
    offset += p->count;
  }
}

static grad_status state_name(char *buf, size_t size, const char *prefix, const char *kind,
                              const char *param) {
  int len = snprintf(buf, size, "%s%s.%s", prefix, kind, param);
  if (len < 0 || (size_t)len >= size)
    return grad__fail(GRAD_E_INVALID_ARG, "optimiser state name too long for parameter %s",
                      param);
  return GRAD_OK;
}

grad_status grad__adamw_write(const grad__adamw *opt, const char *prefix,
                              grad__st_writer *writer) {
  char name[512];
  size_t offset = 0;
  for (size_t i = 0; i < opt->count; i++) {
    const grad__param *p = opt->params[i];
    const float *state[2] = {opt->exp_avg + offset, opt->exp_avg_sq + offset};
    const char *kind[2] = {"exp_avg", "exp_avg_sq"};
    for (int k = 0; k < 2; k++) {
      grad_status st = state_name(name, sizeof name, prefix, kind[k], p->name);
      if (st == GRAD_OK) st = grad__st_writer_add(writer, name, p->ndim, p->shape, state[k]);
      if (st != GRAD_OK) return st;
    }
    offset += p->count;
  }
  char value[32];
  snprintf(value, sizeof value, "%" PRId64, opt->step);
  snprintf(name, sizeof name, "%sstep", prefix);
  return grad__st_writer_meta(writer, name, value);
}

grad_status grad__adamw_read(grad__adamw *opt, const char *prefix, const grad__st_file *file) {
  char name[512];
  snprintf(name, sizeof name, "%sstep", prefix);
  const char *text = grad__st_meta(file, name);
  char *end = NULL;
  long long step = text ? strtoll(text, &end, 10) : -1;
  if (!text || end == text || *end != '\0' || step < 0)
    return grad__fail(text ? GRAD_E_FORMAT : GRAD_E_MISSING, "%s: optimiser step \"%s\" %s",
                      grad__st_path(file), name, text ? "is not a count" : "is absent");
  size_t offset = 0;
  for (size_t i = 0; i < opt->count; i++) {
    const grad__param *p = opt->params[i];
    float *state[2] = {opt->exp_avg + offset, opt->exp_avg_sq + offset};
    const char *kind[2] = {"exp_avg", "exp_avg_sq"};
    for (int k = 0; k < 2; k++) {
      grad_status st = state_name(name, sizeof name, prefix, kind[k], p->name);
      if (st == GRAD_OK) st = grad__st_read_f32(file, name, p->ndim, p->shape, true, state[k]);
      if (st != GRAD_OK) return st;
    }
    offset += p->count;
  }
  opt->step = step;
  return GRAD_OK;
}

double grad__step_lr(double base, double gamma, int step_epochs, int epoch) {
  double lr = base;
  if (step_epochs <= 0) return lr;
  for (int e = step_epochs; e <= epoch; e += step_epochs) lr *= gamma;
  return lr;
}

double grad__clip_grad_norm(grad__param *const *params, size_t count, double max_norm) {
  double sum = 0.0;
  for (size_t i = 0; i < count; i++) {
    const float *g = params[i]->grad;
    for (size_t j = 0; j < params[i]->count; j++) sum += (double)g[j] * g[j];
  }
  double norm = sqrt(sum);
  if (!isfinite(norm) || !(max_norm > 0)) return norm;
  /* torch forms the coefficient in float32: max_norm / (norm + 1e-6). */
  float coef = (float)max_norm / ((float)norm + 1e-6f);
  if (coef < 1.0f)
    for (size_t i = 0; i < count; i++) {
      float *g = params[i]->grad;
      for (size_t j = 0; j < params[i]->count; j++) g[j] *= coef;
    }
  return norm;
}
