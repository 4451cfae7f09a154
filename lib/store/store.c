/* The grid feature store's parameters: layout, initialisation, files. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"
#include "store_impl.h"
#ifdef GRAD_HAVE_ONEDNN
#include "conv_dnnl.h"
#endif

enum { NAME_SLOT = 64 };

/* Limits that keep every size within int (BLAS) and the model in memory. */
enum { MAX_CHANNELS = 4096, MAX_SIDE = 1024, MAX_LOCAL_RES = 1024, MAX_GLOBAL_RES = 64,
       MAX_BLOCKS = 64, MAX_EXPANSION = 16384 };
#define MAX_GLOBAL_GRID_FLOATS ((uint64_t)1 << 30)

grad_status grad__store_check_config(const grad__store_config *c) {
  if (!c) return grad__fail(GRAD_E_INVALID_ARG, "store config is NULL");
  const struct {
    const char *name;
    int value, lo, hi;
  } fields[] = {
    {"channels", c->channels, 1, MAX_CHANNELS}, {"height", c->height, 1, MAX_SIDE},
    {"width", c->width, 1, MAX_SIDE},           {"local_res", c->local_res, 1, MAX_LOCAL_RES},
    {"global_res", c->global_res, 1, MAX_GLOBAL_RES}, {"blocks", c->blocks, 0, MAX_BLOCKS},
  };
  for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
    if (fields[i].value < fields[i].lo || fields[i].value > fields[i].hi)
      return grad__fail(GRAD_E_INVALID_ARG, "store %s = %d is outside [%d, %d]", fields[i].name,
                        fields[i].value, fields[i].lo, fields[i].hi);
  if (c->decoder != GRAD__DECODER_BASIC && c->decoder != GRAD__DECODER_CRAD)
    return grad__fail(GRAD_E_INVALID_ARG, "store decoder %d is neither BasicBlock (0) nor CRAD (1)",
                      c->decoder);
  if (c->decoder == GRAD__DECODER_BASIC && c->expansion != 0)
    return grad__fail(GRAD_E_INVALID_ARG,
                      "store expansion %d is for the CRAD decoder; the BasicBlock one takes 0",
                      c->expansion);
  if (c->decoder == GRAD__DECODER_CRAD &&
      (c->expansion < CRAD_SE_REDUCTION || c->expansion > MAX_EXPANSION))
    return grad__fail(GRAD_E_INVALID_ARG, "store expansion = %d is outside [%d, %d]",
                      c->expansion, (int)CRAD_SE_REDUCTION, (int)MAX_EXPANSION);
  uint64_t global = (uint64_t)c->channels * (uint64_t)c->height * (uint64_t)c->width *
                    (uint64_t)c->global_res * (uint64_t)c->global_res;
  if (global > MAX_GLOBAL_GRID_FLOATS)
    return grad__fail(GRAD_E_TOO_LARGE,
                      "store global grid of %" PRIu64 " values (C*H*W*Rg*Rg) exceeds %" PRIu64,
                      global, (uint64_t)MAX_GLOBAL_GRID_FLOATS);
  return GRAD_OK;
}

static void describe(grad__param *p, char *slot, grad__param_group group, int ndim,
                     const int64_t *shape, const char *fmt, int block) {
  snprintf(slot, NAME_SLOT, fmt, block);
  p->name = slot;
  p->group = group;
  p->ndim = ndim;
  p->count = 1;
  for (int d = 0; d < 4; d++) {
    p->shape[d] = d < ndim ? shape[d] : 0;
    if (d < ndim) p->count *= (size_t)shape[d];
  }
}

/* Fills the name, shape and group of every parameter and buffer. */
static void describe_all(grad_store *s) {
  const grad__store_config *c = &s->config;
  const int64_t C = c->channels, C2 = 2 * C, HW = (int64_t)c->height * c->width;
  const int64_t rl = c->local_res, rg = c->global_res;
  char *slot = s->names;
  grad__param *p = s->params;
#define PARAM(group, fmt, block, ...)                                             \
  do {                                                                            \
    const int64_t shape_[] = {__VA_ARGS__};                                       \
    describe(p++, slot, group, (int)(sizeof shape_ / sizeof shape_[0]), shape_, fmt, block); \
    slot += NAME_SLOT;                                                            \
  } while (0)
  PARAM(GRAD__PARAM_GRID, "store.local_grid", 0, 1, C, rl, rl);
  PARAM(GRAD__PARAM_GRID, "store.global_grid", 0, 1, C * HW, rg, rg);
  PARAM(GRAD__PARAM_NET, "store.local_net.0.weight", 0, C, C, 1, 1);
  PARAM(GRAD__PARAM_NET, "store.local_net.0.bias", 0, C);
  PARAM(GRAD__PARAM_NET, "store.local_net.1.weight", 0, 2, C, 1, 1);
  PARAM(GRAD__PARAM_NET, "store.local_net.1.bias", 0, 2);
  PARAM(GRAD__PARAM_NET, "store.global_net.0.weight", 0, C, C);
  PARAM(GRAD__PARAM_NET, "store.global_net.0.bias", 0, C);
  PARAM(GRAD__PARAM_NET, "store.global_net.1.weight", 0, 2, C);
  PARAM(GRAD__PARAM_NET, "store.global_net.1.bias", 0, 2);
  const int64_t E = c->expansion, R = E / CRAD_SE_REDUCTION;
  const bool crad = c->decoder == GRAD__DECODER_CRAD;
  for (int b = 0; b < c->blocks; b++) {
    if (crad) {
      PARAM(GRAD__PARAM_NET, "store.decoder.%d.expand.weight", b, E, C2, 1, 1);
      PARAM(GRAD__PARAM_NET, "store.decoder.%d.bn1.weight", b, E);
      PARAM(GRAD__PARAM_NET, "store.decoder.%d.bn1.bias", b, E);
      PARAM(GRAD__PARAM_NET, "store.decoder.%d.depthwise.weight", b, E, 1, 3, 3);
      PARAM(GRAD__PARAM_NET, "store.decoder.%d.bn2.weight", b, E);
      PARAM(GRAD__PARAM_NET, "store.decoder.%d.bn2.bias", b, E);
      PARAM(GRAD__PARAM_NET, "store.decoder.%d.se.reduce.weight", b, R, E);
      PARAM(GRAD__PARAM_NET, "store.decoder.%d.se.expand.weight", b, E, R);
      PARAM(GRAD__PARAM_NET, "store.decoder.%d.project.weight", b, C2, E, 1, 1);
      PARAM(GRAD__PARAM_NET, "store.decoder.%d.bn3.weight", b, C2);
      PARAM(GRAD__PARAM_NET, "store.decoder.%d.bn3.bias", b, C2);
    } else {
      PARAM(GRAD__PARAM_NET, "store.decoder.%d.conv1.weight", b, C2, C2, 3, 3);
      PARAM(GRAD__PARAM_NET, "store.decoder.%d.bn1.weight", b, C2);
      PARAM(GRAD__PARAM_NET, "store.decoder.%d.bn1.bias", b, C2);
      PARAM(GRAD__PARAM_NET, "store.decoder.%d.conv2.weight", b, C2, C2, 3, 3);
      PARAM(GRAD__PARAM_NET, "store.decoder.%d.bn2.weight", b, C2);
      PARAM(GRAD__PARAM_NET, "store.decoder.%d.bn2.bias", b, C2);
    }
  }
  PARAM(GRAD__PARAM_NET, "store.out.weight", 0, C, C2, 1, 1);
  p = s->buffers;
  for (int b = 0; b < c->blocks; b++) {
    PARAM(GRAD__PARAM_NET, "store.decoder.%d.bn1.running_mean", b, crad ? E : C2);
    PARAM(GRAD__PARAM_NET, "store.decoder.%d.bn1.running_var", b, crad ? E : C2);
    PARAM(GRAD__PARAM_NET, "store.decoder.%d.bn2.running_mean", b, crad ? E : C2);
    PARAM(GRAD__PARAM_NET, "store.decoder.%d.bn2.running_var", b, crad ? E : C2);
    if (crad) {
      PARAM(GRAD__PARAM_NET, "store.decoder.%d.bn3.running_mean", b, C2);
      PARAM(GRAD__PARAM_NET, "store.decoder.%d.bn3.running_var", b, C2);
    }
  }
#undef PARAM
}

/* A store with its layout and zeroed values, gradients and buffers. */
static grad_status store_alloc(const grad__store_config *config, grad_store **out) {
  grad_status st = grad__store_check_config(config);
  if (st != GRAD_OK) return st;
  grad_store *s = grad__calloc(1, sizeof *s);
  if (!s) return grad__fail(GRAD_E_NOMEM, "out of memory creating the grid feature store");
  s->config = *config;
  const bool crad = config->decoder == GRAD__DECODER_CRAD;
  s->per_block = crad ? CRAD_PER_BLOCK : BASIC_PER_BLOCK;
  s->buffers_per_block = crad ? CRAD_BUFFERS_PER_BLOCK : BASIC_BUFFERS_PER_BLOCK;
  s->param_count = STORE_BLOCK0 + (size_t)config->blocks * s->per_block + 1;
  s->buffer_count = (size_t)config->blocks * s->buffers_per_block;
  s->params = grad__calloc(s->param_count, sizeof *s->params);
  s->buffers = grad__calloc(s->buffer_count ? s->buffer_count : 1, sizeof *s->buffers);
  s->names = grad__calloc(s->param_count + s->buffer_count, NAME_SLOT);
  if (!s->params || !s->buffers || !s->names) goto nomem;
  describe_all(s);
  if (grad__store_dnnl_create(s) != GRAD_OK) goto nomem;
  size_t values = 0, buffered = 0;
  for (size_t i = 0; i < s->param_count; i++) values += s->params[i].count;
  for (size_t i = 0; i < s->buffer_count; i++) buffered += s->buffers[i].count;
  s->values = grad__calloc(values, sizeof(float));
  s->grads = grad__calloc(values, sizeof(float));
  s->buffer_values = grad__calloc(buffered ? buffered : 1, sizeof(float));
  if (!s->values || !s->grads || !s->buffer_values) goto nomem;
  values = 0;
  for (size_t i = 0; i < s->param_count; i++) {
    s->params[i].value = s->values + values;
    s->params[i].grad = s->grads + values;
    values += s->params[i].count;
  }
  buffered = 0;
  for (size_t i = 0; i < s->buffer_count; i++) {
    s->buffers[i].value = s->buffer_values + buffered;
    s->buffers[i].grad = NULL;
    buffered += s->buffers[i].count;
  }
  *out = s;
  return GRAD_OK;
nomem:
  grad_store_free(s);
  return grad__fail(GRAD_E_NOMEM, "out of memory creating the grid feature store");
}

/* torch.nn.init.xavier_normal_ on a 1 x K x R x R tensor: fan_in = K R^2,
 * fan_out = R^2 (the receptive field is the trailing R x R). */
static double xavier_std(const grad__param *p) {
  double field = (double)p->shape[2] * (double)p->shape[3];
  return sqrt(2.0 / ((double)p->shape[0] * field + (double)p->shape[1] * field));
}

static void fill(float *v, size_t count, float value) {
  for (size_t i = 0; i < count; i++) v[i] = value;
}

/* Whether block tensor k is a BatchNorm weight (initialised to 1). */
static bool is_bn_weight(const grad_store *s, size_t k) {
  if (s->config.decoder == GRAD__DECODER_CRAD)
    return k == CRAD_BN1_W || k == CRAD_BN2_W || k == CRAD_BN3_W;
  return k == BLOCK_BN1_W || k == BLOCK_BN2_W;
}

/* docs/method.md section 6. One generator, drawn in parameter order: every
 * convolution and linear weight N(0, 0.01^2), as the official code's
 * initialiser does for every Conv2d and Linear (the CRAD bottleneck's
 * depthwise and squeeze-and-excitation weights included). */
static void initialise(grad_store *s, uint64_t seed) {
  grad__rng rng;
  grad__rng_seed(&rng, seed);
  for (size_t i = 0; i < s->param_count; i++) {
    grad__param *p = &s->params[i];
    bool in_block = i >= STORE_BLOCK0 && i < store__out(s);
    size_t k = in_block ? (i - STORE_BLOCK0) % s->per_block : 0;
    if (i == STORE_LOCAL_GRID || i == STORE_GLOBAL_GRID)
      grad__rng_fill_normal(&rng, p->value, p->count, 0.0, xavier_std(p));
    else if (p->ndim >= 2) /* weights; BatchNorm parameters and biases are vectors */
      grad__rng_fill_normal(&rng, p->value, p->count, 0.0, 0.01);
    else if (in_block && is_bn_weight(s, k))
      fill(p->value, p->count, 1.0f);
    else
      fill(p->value, p->count, 0.0f); /* biases */
  }
  /* Buffers come in (running_mean, running_var) pairs. */
  for (size_t i = 0; i < s->buffer_count; i++)
    fill(s->buffers[i].value, s->buffers[i].count, i % 2 == 1 ? 1.0f : 0.0f);
}

grad_status grad__store_create(const grad__store_config *config, uint64_t seed,
                               grad_store **out) {
  if (!out) return grad__fail(GRAD_E_INVALID_ARG, "grad__store_create: out is NULL");
  *out = NULL;
  grad_store *s = NULL;
  grad_status st = store_alloc(config, &s);
  if (st != GRAD_OK) return st;
  initialise(s, seed);
  *out = s;
  return GRAD_OK;
}

void grad_store_free(grad_store *store) {
  if (!store) return;
#ifdef GRAD_HAVE_ONEDNN
  grad__conv_dnnl_set_free(store->dnnl);
#endif
  grad__store_dnnl_free(store);
  grad__free(store->values);
  grad__free(store->grads);
  grad__free(store->buffer_values);
  grad__free(store->params);
  grad__free(store->buffers);
  grad__free(store->names);
  grad__free(store);
}

const grad__store_config *grad__store_config_of(const grad_store *store) {
  return &store->config;
}

size_t grad__store_param_count(const grad_store *store) { return store->param_count; }

grad__param *grad__store_param(grad_store *store, size_t index) {
  return index < store->param_count ? &store->params[index] : NULL;
}

size_t grad__store_buffer_count(const grad_store *store) { return store->buffer_count; }

grad__param *grad__store_buffer(grad_store *store, size_t index) {
  return index < store->buffer_count ? &store->buffers[index] : NULL;
}

void grad__store_zero_grad(grad_store *store) {
  for (size_t i = 0; i < store->param_count; i++)
    memset(store->params[i].grad, 0, store->params[i].count * sizeof(float));
}

void grad__store_touch(grad_store *store) { store->generation++; }

void grad__store_precision_set(grad_store *store, grad_precision precision) {
  store->precision = precision;
}

void grad__store_train_precision_set(grad_store *store, grad_precision precision) {
  store->train_precision = precision;
}

/* ---- Files --------------------------------------------------------------- */

/* Format 1: BasicBlock decoder (no decoder key). Format 2 adds
 * store.decoder and store.expansion; only CRAD stores are written as 2, so
 * BasicBlock files stay readable by older libgrad and CRAD files are
 * refused by it as a newer version. */
#define STORE_FORMAT_BASIC "1"
#define STORE_FORMAT_DECODER "2"

static const struct meta_key {
  const char *key;
  size_t offset;
} meta_keys[] = {
  {"store.channels", offsetof(grad__store_config, channels)},
  {"store.height", offsetof(grad__store_config, height)},
  {"store.width", offsetof(grad__store_config, width)},
  {"store.local_res", offsetof(grad__store_config, local_res)},
  {"store.global_res", offsetof(grad__store_config, global_res)},
  {"store.blocks", offsetof(grad__store_config, blocks)},
};
enum { META_KEYS = sizeof meta_keys / sizeof meta_keys[0] };

static int *config_field(grad__store_config *c, size_t offset) {
  return (int *)((char *)c + offset);
}

grad_status grad__store_write(const grad_store *store, grad__st_writer *writer) {
  if (!store || !writer) return grad__fail(GRAD_E_INVALID_ARG, "grad__store_write: NULL argument");
  grad__store_config c = store->config;
  const bool crad = c.decoder == GRAD__DECODER_CRAD;
  grad_status st = grad__st_writer_meta(writer, "store.format",
                                        crad ? STORE_FORMAT_DECODER : STORE_FORMAT_BASIC);
  for (size_t i = 0; i < META_KEYS && st == GRAD_OK; i++) {
    char text[16];
    snprintf(text, sizeof text, "%d", *config_field(&c, meta_keys[i].offset));
    st = grad__st_writer_meta(writer, meta_keys[i].key, text);
  }
  if (crad && st == GRAD_OK) st = grad__st_writer_meta(writer, "store.decoder", "crad");
  if (crad && st == GRAD_OK) {
    char text[16];
    snprintf(text, sizeof text, "%d", c.expansion);
    st = grad__st_writer_meta(writer, "store.expansion", text);
  }
  for (size_t i = 0; i < store->param_count && st == GRAD_OK; i++) {
    const grad__param *p = &store->params[i];
    st = grad__st_writer_add(writer, p->name, p->ndim, p->shape, p->value);
  }
  for (size_t i = 0; i < store->buffer_count && st == GRAD_OK; i++) {
    const grad__param *p = &store->buffers[i];
    st = grad__st_writer_add(writer, p->name, p->ndim, p->shape, p->value);
  }
  return st == GRAD_OK ? st : grad__fail_context(st, "writing the grid feature store");
}

/* A decimal metadata value in [0, INT_MAX]; anything else is a format error. */
static grad_status meta_int(const grad__st_file *file, const char *key, int *out) {
  const char *text = grad__st_meta(file, key);
  if (!text) return grad__fail(GRAD_E_MISSING, "metadata key %s is missing", key);
  long value = 0;
  const char *p = text;
  if (!*p) return grad__fail(GRAD_E_FORMAT, "metadata %s is empty", key);
  for (; *p; p++) {
    if (*p < '0' || *p > '9' || value > 100000000L)
      return grad__fail(GRAD_E_FORMAT, "metadata %s = \"%s\" is not a small decimal integer",
                        key, text);
    value = value * 10 + (*p - '0');
  }
  *out = (int)value;
  return GRAD_OK;
}

static grad_status read_config(const grad__st_file *file, grad__store_config *c) {
  int version = 0;
  grad_status st = meta_int(file, "store.format", &version);
  if (st != GRAD_OK) return st;
  if (version != 1 && version != 2)
    return grad__fail(version > 2 ? GRAD_E_VERSION : GRAD_E_FORMAT,
                      "store.format %d is not supported (this libgrad reads versions 1 and 2)",
                      version);
  memset(c, 0, sizeof *c);
  for (size_t i = 0; i < META_KEYS; i++) {
    st = meta_int(file, meta_keys[i].key, config_field(c, meta_keys[i].offset));
    if (st != GRAD_OK) return st;
  }
  if (version == 2) {
    const char *decoder = grad__st_meta(file, "store.decoder");
    if (!decoder) return grad__fail(GRAD_E_MISSING, "metadata key store.decoder is missing");
    if (strcmp(decoder, "crad") == 0)
      c->decoder = GRAD__DECODER_CRAD;
    else if (strcmp(decoder, "basic") != 0)
      return grad__fail(GRAD_E_FORMAT,
                        "metadata store.decoder = \"%s\" is neither \"basic\" nor \"crad\"",
                        decoder);
    if (c->decoder == GRAD__DECODER_CRAD) {
      st = meta_int(file, "store.expansion", &c->expansion);
      if (st != GRAD_OK) return st;
    }
  }
  st = grad__store_check_config(c);
  /* An out-of-range value in a file is a corrupt file, not a bad argument. */
  return st == GRAD_E_INVALID_ARG ? grad__fail_context(GRAD_E_FORMAT, "metadata") : st;
}

grad_status grad__store_read(const grad__st_file *file, grad_store **out) {
  if (!file || !out) return grad__fail(GRAD_E_INVALID_ARG, "grad__store_read: NULL argument");
  *out = NULL;
  grad__store_config config;
  grad_status st = read_config(file, &config);
  grad_store *s = NULL;
  if (st == GRAD_OK) st = store_alloc(&config, &s);
  for (size_t i = 0; st == GRAD_OK && i < s->param_count; i++) {
    grad__param *p = &s->params[i];
    st = grad__st_read_f32(file, p->name, p->ndim, p->shape, true, p->value);
  }
  for (size_t i = 0; st == GRAD_OK && i < s->buffer_count; i++) {
    grad__param *p = &s->buffers[i];
    st = grad__st_read_f32(file, p->name, p->ndim, p->shape, true, p->value);
    /* A negative running variance (every second buffer) would make
     * inference produce NaN. */
    for (size_t j = 0; st == GRAD_OK && i % 2 == 1 && j < p->count; j++)
      if (p->value[j] < 0.0f)
        st = grad__fail(GRAD_E_NUMERIC, "%s[%zu] = %g is negative", p->name, j,
                        (double)p->value[j]);
  }
  if (st != GRAD_OK) {
    grad_store_free(s);
    return grad__fail_context(st, "reading the grid feature store");
  }
  *out = s;
  return GRAD_OK;
}

/* ---- Public ---------------------------------------------------------------- */

int grad_store_channels(const grad_store *store) { return store ? store->config.channels : 0; }
int grad_store_height(const grad_store *store) { return store ? store->config.height : 0; }
int grad_store_width(const grad_store *store) { return store ? store->config.width : 0; }

grad_status grad_store_reconstruct(const grad_store *store, grad_workspace *ws,
                                   const float *features, int n, float *reconstruction) {
  if (!ws) return grad__fail(GRAD_E_INVALID_ARG, "grad_store_reconstruct: ws is NULL");
  grad__ws_reset(ws);
  return grad__store_reconstruct(store, ws, features, n, reconstruction);
}
