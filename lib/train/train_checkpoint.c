/* Training checkpoints: save and resume to the identical result. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train_internal.h"

#define CHECKPOINT_FORMAT "1"
#define ADAMW_PREFIX "train.adamw."

static void store_description(const grad_store *store, char *buf, size_t size) {
  const grad__store_config *c = grad__store_config_of(store);
  int used = snprintf(buf, size,
                      "channels=%d height=%d width=%d local_res=%d global_res=%d blocks=%d",
                      c->channels, c->height, c->width, c->local_res, c->global_res, c->blocks);
  /* BasicBlock stores keep the description older checkpoints carry. */
  if (c->decoder == GRAD__DECODER_CRAD && used > 0 && (size_t)used < size)
    snprintf(buf + used, size - (size_t)used, " decoder=crad expansion=%d", c->expansion);
}

static grad_status meta_int(grad__st_writer *w, const char *key, long long value) {
  char text[32];
  snprintf(text, sizeof text, "%lld", value);
  return grad__st_writer_meta(w, key, text);
}

grad_status grad__train_checkpoint_save(const grad__trainer *t, int images, const char *path) {
  grad__st_writer *w = NULL;
  grad_status st = grad__st_writer_create(&w);
  if (st != GRAD_OK) return st;
  char text[512];
  const grad_train_options *o = &t->options;
  st = grad__store_write(t->store, w);
  if (st == GRAD_OK) st = grad__adamw_write(t->optimiser, ADAMW_PREFIX, w);
  if (st == GRAD_OK) st = grad__st_writer_meta(w, "train.format", CHECKPOINT_FORMAT);
  if (st == GRAD_OK) st = meta_int(w, "train.epoch", t->epoch);
  if (st == GRAD_OK) st = meta_int(w, "train.images", images);
  if (st == GRAD_OK) st = meta_int(w, "train.batch", o->batch);
  if (st == GRAD_OK) {
    snprintf(text, sizeof text, "%016" PRIx64 " %016" PRIx64 " %016" PRIx64 " %016" PRIx64,
             t->rng.s[0], t->rng.s[1], t->rng.s[2], t->rng.s[3]);
    st = grad__st_writer_meta(w, "train.rng", text);
  }
  if (st == GRAD_OK) {
    store_description(t->store, text, sizeof text);
    st = grad__st_writer_meta(w, "train.store", text);
  }
  if (st == GRAD_OK) {
    snprintf(text, sizeof text,
             "epochs=%d batch=%d lr_grid=%.17g lr_net=%.17g weight_decay=%.17g "
             "lr_step_epochs=%d lr_gamma=%.17g clip_norm=%.17g noise_prob=%.17g "
             "noise_std=%.17g seed=%" PRIu64,
             o->epochs, o->batch, o->lr_grid, o->lr_net, o->weight_decay, o->lr_step_epochs,
             o->lr_gamma, o->clip_norm, o->noise_prob, o->noise_std, o->seed);
    if (o->precision != GRAD_PRECISION_FP32) /* fp32 checkpoints read as before */
      snprintf(text + strlen(text), sizeof text - strlen(text), " precision=%s",
               grad_precision_name(o->precision));
    st = grad__st_writer_meta(w, "train.options", text);
  }
  if (st == GRAD_OK) st = grad__st_writer_save(w, path);
  grad__st_writer_free(w);
  if (st != GRAD_OK) return grad__fail_context(st, "saving checkpoint %s", path);
  return GRAD_OK;
}

static grad_status read_count(const grad__st_file *f, const char *key, long long *out) {
  const char *text = grad__st_meta(f, key);
  if (!text) return grad__fail(GRAD_E_MISSING, "metadata \"%s\" is absent", key);
  char *end = NULL;
  *out = strtoll(text, &end, 10);
  if (end == text || *end || *out < 0)
    return grad__fail(GRAD_E_FORMAT, "metadata \"%s\" = \"%s\" is not a count", key, text);
  return GRAD_OK;
}

/* Present with the parameter's shape: checked for all before any is read,
 * so a wrong file leaves the store untouched. */
static grad_status check_tensor(const grad__st_file *f, const grad__param *p) {
  const grad__st_tensor *t = grad__st_find(f, p->name);
  if (!t) return grad__fail(GRAD_E_MISSING, "tensor \"%s\" is absent", p->name);
  bool same = t->ndim == p->ndim;
  for (int d = 0; same && d < p->ndim; d++) same = t->shape[d] == p->shape[d];
  if (!same) {
    char want[96], got[96];
    grad__st_format_shape(p->ndim, p->shape, want, sizeof want);
    grad__st_format_shape(t->ndim, t->shape, got, sizeof got);
    return grad__fail(GRAD_E_SHAPE, "tensor \"%s\" is %s, the store has %s", p->name, got, want);
  }
  return GRAD_OK;
}

static grad_status load(grad__trainer *t, int images, const grad__st_file *f) {
  const char *format = grad__st_meta(f, "train.format");
  if (!format) return grad__fail(GRAD_E_FORMAT, "not a training checkpoint (no train.format)");
  if (strcmp(format, CHECKPOINT_FORMAT) != 0)
    return grad__fail(GRAD_E_VERSION, "checkpoint format %s, this library reads %s", format,
                      CHECKPOINT_FORMAT);
  char want[512];
  store_description(t->store, want, sizeof want);
  const char *have = grad__st_meta(f, "train.store");
  if (!have || strcmp(have, want) != 0)
    return grad__fail(GRAD_E_STATE, "checkpoint store is \"%s\", this store is \"%s\"",
                      have ? have : "(absent)", want);
  long long epoch = 0, ck_images = 0, batch = 0;
  grad_status st = read_count(f, "train.epoch", &epoch);
  if (st == GRAD_OK) st = read_count(f, "train.images", &ck_images);
  if (st == GRAD_OK) st = read_count(f, "train.batch", &batch);
  if (st != GRAD_OK) return st;
  if (ck_images != images || batch != t->options.batch)
    return grad__fail(GRAD_E_STATE,
                      "checkpoint was made with %lld images in batches of %lld; this run has "
                      "%d in batches of %d",
                      ck_images, batch, images, t->options.batch);
  if (epoch > 1000000) return grad__fail(GRAD_E_FORMAT, "train.epoch %lld is absurd", epoch);
  const char *rng_text = grad__st_meta(f, "train.rng");
  grad__rng rng;
  if (!rng_text || sscanf(rng_text, "%" SCNx64 " %" SCNx64 " %" SCNx64 " %" SCNx64, &rng.s[0],
                          &rng.s[1], &rng.s[2], &rng.s[3]) != 4)
    return grad__fail(GRAD_E_FORMAT, "metadata \"train.rng\" is absent or malformed");
  size_t params = grad__store_param_count(t->store), buffers = grad__store_buffer_count(t->store);
  for (size_t i = 0; i < params + buffers && st == GRAD_OK; i++)
    st = check_tensor(f, i < params ? grad__store_param(t->store, i)
                                    : grad__store_buffer(t->store, i - params));
  for (size_t i = 0; i < params + buffers && st == GRAD_OK; i++) {
    grad__param *p = i < params ? grad__store_param(t->store, i)
                                : grad__store_buffer(t->store, i - params);
    st = grad__st_read_f32(f, p->name, p->ndim, p->shape, true, p->value);
  }
  grad__store_touch(t->store);
  if (st == GRAD_OK) st = grad__adamw_read(t->optimiser, ADAMW_PREFIX, f);
  if (st != GRAD_OK) return st;
  t->rng = rng;
  t->epoch = (int)epoch;
  return GRAD_OK;
}

grad_status grad__train_checkpoint_load(grad__trainer *t, int images, const char *path) {
  grad__st_file *f = NULL;
  grad_status st = grad__st_open(path, &f);
  if (st != GRAD_OK) return grad__fail_context(st, "resuming training");
  st = load(t, images, f);
  grad__st_close(f);
  if (st != GRAD_OK) return grad__fail_context(st, "resuming from checkpoint %s", path);
  return GRAD_OK;
}
