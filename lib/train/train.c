/* The training loop over cached features (docs/method.md section 6), and grad_store_train. */
#include <math.h>
#include <string.h>
#include <time.h>

#include "train_internal.h"

static const grad_train_options default_train = {
  .struct_size = sizeof(grad_train_options),
  .epochs = 100,
  .batch = 16,
  .lr_grid = 0.1,
  .lr_net = 1e-3,
  .weight_decay = 0.01,
  .lr_step_epochs = 40,
  .lr_gamma = 0.1,
  .clip_norm = 0.1,
  .noise_prob = 0.5,
  .noise_std = 0.05,
  .seed = 0,
  .checkpoint_path = NULL,
  .checkpoint_every = 0,
  .memory_limit_bytes = (size_t)2 << 30,
  .progress = NULL,
  .progress_user = NULL,
  .resume_path = NULL,
  .note = NULL,
  .precision = GRAD_PRECISION_FP32,
};

void grad_train_options_init(grad_train_options *options, size_t struct_size) {
  grad__struct_init(options, struct_size, &default_train, sizeof default_train);
}

static bool nonneg(double x) { return isfinite(x) && x >= 0; }

grad_status grad__train_options_resolve(const grad_train_options *in, grad_train_options *out) {
  *out = default_train;
  grad_status s = grad__struct_read("grad_train_options", in,
                                    GRAD__STRUCT_MIN(grad_train_options, epochs), out,
                                    sizeof *out);
  if (s != GRAD_OK) return s;
  const char *bad = NULL;
  if (out->epochs < 0) bad = "epochs";
  else if (out->batch < 1) bad = "batch";
  else if (!nonneg(out->lr_grid)) bad = "lr_grid";
  else if (!nonneg(out->lr_net)) bad = "lr_net";
  else if (!nonneg(out->weight_decay)) bad = "weight_decay";
  else if (out->lr_step_epochs < 0) bad = "lr_step_epochs";
  else if (!nonneg(out->lr_gamma)) bad = "lr_gamma";
  else if (!nonneg(out->clip_norm)) bad = "clip_norm";
  else if (!nonneg(out->noise_prob) || out->noise_prob > 1) bad = "noise_prob";
  else if (!nonneg(out->noise_std)) bad = "noise_std";
  else if (out->checkpoint_every < 0) bad = "checkpoint_every";
  else if (out->precision != GRAD_PRECISION_FP32 && out->precision != GRAD_PRECISION_BF16)
    bad = "precision";
  if (bad) return grad__fail(GRAD_E_INVALID_ARG, "training options: %s is out of range", bad);
  if (!grad_precision_available(out->precision))
    return grad__fail(GRAD_E_UNSUPPORTED,
                      "training options: precision %s needs a CPU with native bf16 "
                      "(AVX512_BF16 or AMX) and libgrad built with oneDNN",
                      grad_precision_name(out->precision));
  return GRAD_OK;
}

void grad__trainer_free(grad__trainer *t) {
  if (!t) return;
  grad__adamw_free(t->optimiser);
  grad_workspace_free(t->ws);
  grad__free(t->params);
  grad__free(t->batch);
  grad__free(t->recon);
  grad__free(t->d_recon);
  grad__free(t->noise);
  grad__free(t);
}

grad_status grad__trainer_create(grad_store *store, const grad_train_options *options,
                                 int max_batch, grad__trainer **out) {
  if (!out) return grad__fail(GRAD_E_INVALID_ARG, "grad__trainer_create: out is NULL");
  *out = NULL;
  if (!store || max_batch < 1)
    return grad__fail(GRAD_E_INVALID_ARG, "grad__trainer_create: no store or batch %d",
                      max_batch);
  grad__trainer *t = grad__calloc(1, sizeof *t);
  if (!t) return grad__fail(GRAD_E_NOMEM, "out of memory for the trainer");
  t->store = store;
  grad_status st = grad__train_options_resolve(options, &t->options);
  if (st != GRAD_OK) {
    grad__trainer_free(t);
    return st;
  }
  grad__store_train_precision_set(store, t->options.precision);
  const grad__store_config *config = grad__store_config_of(store);
  t->max_batch = max_batch;
  t->channels = config->channels;
  t->positions = (size_t)config->height * (size_t)config->width;
  t->param_count = grad__store_param_count(store);
  t->params = grad__malloc_array(t->param_count ? t->param_count : 1, sizeof *t->params);
  size_t image = (size_t)t->channels * t->positions, batch_floats = 0;
  bool sized = grad__mul_size(image, (size_t)max_batch, &batch_floats);
  if (sized) {
    t->batch = grad__malloc_array(batch_floats, sizeof(float));
    t->recon = grad__malloc_array(batch_floats, sizeof(float));
    t->d_recon = grad__malloc_array(batch_floats, sizeof(float));
    t->noise = grad__malloc_array(2 * t->positions * (size_t)max_batch, sizeof(float));
  }
  if (!t->params || !t->batch || !t->recon || !t->d_recon || !t->noise) {
    grad__trainer_free(t);
    return grad__fail(GRAD_E_NOMEM, "out of memory for training batches of %d images",
                      max_batch);
  }
  for (size_t i = 0; i < t->param_count; i++) t->params[i] = grad__store_param(store, i);
  grad__adamw_config adam;
  grad__adamw_config_init(&adam);
  adam.lr[GRAD__PARAM_GRID] = t->options.lr_grid;
  adam.lr[GRAD__PARAM_NET] = t->options.lr_net;
  adam.weight_decay = t->options.weight_decay;
  st = grad__adamw_create(t->params, t->param_count, &adam, &t->optimiser);
  if (st == GRAD_OK) st = grad_workspace_create(&t->ws);
  if (st != GRAD_OK) {
    grad__trainer_free(t);
    return st;
  }
  grad__rng_seed(&t->rng, t->options.seed);
  *out = t;
  return GRAD_OK;
}

void grad__trainer_set_epoch_lr(grad__trainer *t, int epoch) {
  const grad_train_options *o = &t->options;
  grad__adamw_set_lr(t->optimiser, GRAD__PARAM_GRID,
                     grad__step_lr(o->lr_grid, o->lr_gamma, o->lr_step_epochs, epoch));
  grad__adamw_set_lr(t->optimiser, GRAD__PARAM_NET,
                     grad__step_lr(o->lr_net, o->lr_gamma, o->lr_step_epochs, epoch));
}

grad_status grad__trainer_step(grad__trainer *t, const float *F, int n, const float *coord_noise,
                               double *loss_out, double *norm_out) {
  if (!t || !F || n < 1 || n > t->max_batch)
    return grad__fail(GRAD_E_INVALID_ARG, "training step: no features or batch %d", n);
  grad__ws_reset(t->ws);
  grad__store_tape *tape = NULL;
  grad_status st = grad__store_forward_train(t->store, t->ws, F, n, coord_noise, t->recon, &tape);
  if (st != GRAD_OK) return grad__fail_context(st, "training forward: ");
  double loss = grad__fusion_loss(t->recon, F, n, t->channels, t->positions, t->d_recon);
  if (!isfinite(loss))
    return grad__fail(GRAD_E_NUMERIC, "training diverged: the loss is %g at step %lld", loss,
                      (long long)grad__adamw_steps(t->optimiser) + 1);
  grad__store_zero_grad(t->store);
  st = grad__store_backward(t->store, tape, t->d_recon, t->ws);
  if (st != GRAD_OK) return grad__fail_context(st, "training backward: ");
  double norm = grad__clip_grad_norm(t->params, t->param_count, t->options.clip_norm);
  if (!isfinite(norm))
    return grad__fail(GRAD_E_NUMERIC, "training diverged: the gradient norm is %g at step %lld",
                      norm, (long long)grad__adamw_steps(t->optimiser) + 1);
  grad__adamw_step(t->optimiser);
  grad__store_touch(t->store);
  if (loss_out) *loss_out = loss;
  if (norm_out) *norm_out = norm;
  return GRAD_OK;
}

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static grad_status check_cache(const grad_store *store, const grad__feature_cache *cache) {
  const grad__store_config *c = grad__store_config_of(store);
  int fc = grad__feature_cache_channels(cache), fh = grad__feature_cache_height(cache),
      fw = grad__feature_cache_width(cache);
  if (fc != c->channels || fh != c->height || fw != c->width)
    return grad__fail(GRAD_E_SHAPE,
                      "training: the cached features are %d x %d x %d, the store expects "
                      "%d x %d x %d",
                      fc, fh, fw, c->channels, c->height, c->width);
  return GRAD_OK;
}

/* State of one call, shared by the epoch loop and the progress report. */
typedef struct run_state {
  grad__trainer *trainer;
  grad__feature_cache *cache;
  int images, steps_per_epoch;
  int *order;
  double start;
  int64_t steps_planned, steps_done;
  grad__train_report *report;
} run_state;

static grad_status report_step(run_state *r, int epoch, int step, double loss, double epoch_loss,
                               double norm) {
  const grad_train_options *o = &r->trainer->options;
  if (!o->progress) return GRAD_OK;
  grad_train_progress p;
  memset(&p, 0, sizeof p);
  p.struct_size = sizeof p;
  p.epoch = epoch;
  p.epochs = o->epochs;
  p.step = step + 1;
  p.steps_per_epoch = r->steps_per_epoch;
  p.total_steps = grad__adamw_steps(r->trainer->optimiser);
  p.loss = loss;
  p.epoch_loss = epoch_loss;
  p.epoch_done = step + 1 == r->steps_per_epoch;
  p.lr_grid = grad__adamw_lr(r->trainer->optimiser, GRAD__PARAM_GRID);
  p.lr_net = grad__adamw_lr(r->trainer->optimiser, GRAD__PARAM_NET);
  p.grad_norm = norm;
  p.elapsed_seconds = now_seconds() - r->start;
  p.eta_seconds = p.elapsed_seconds / (double)r->steps_done *
                  (double)(r->steps_planned - r->steps_done);
  p.phase = GRAD_TRAIN_PHASE_EPOCHS;
  p.phase_done = r->steps_done;
  p.phase_total = r->steps_planned;
  if (o->progress(&p, o->progress_user) != 0)
    return grad__fail(GRAD_E_CANCELLED,
                      "training cancelled by the progress callback at epoch %d, step %d", epoch,
                      step + 1);
  return GRAD_OK;
}

static grad_status run_epoch(run_state *r, int epoch) {
  grad__trainer *t = r->trainer;
  const grad_train_options *o = &t->options;
  grad__trainer_set_epoch_lr(t, epoch);
  for (int i = 0; i < r->images; i++) r->order[i] = i;
  grad__rng_shuffle(&t->rng, r->order, (size_t)r->images);
  double sum = 0.0;
  int seen = 0;
  for (int s = 0; s < r->steps_per_epoch; s++) {
    int first = s * o->batch;
    int n = r->images - first < o->batch ? r->images - first : o->batch;
    grad_status st = grad__feature_cache_gather(r->cache, r->order + first, n, t->batch);
    if (st != GRAD_OK) return st;
    const float *noise = NULL;
    if (grad__rng_uniform(&t->rng) < o->noise_prob) {
      grad__rng_fill_normal(&t->rng, t->noise, (size_t)n * 2 * t->positions, 0.0, o->noise_std);
      noise = t->noise;
    }
    double loss = 0, norm = 0;
    st = grad__trainer_step(t, t->batch, n, noise, &loss, &norm);
    if (st != GRAD_OK) return grad__fail_context(st, "epoch %d: ", epoch);
    sum += loss * n;
    seen += n;
    r->steps_done++;
    if (r->report) {
      if (r->report->steps == 0) r->report->first_loss = loss;
      r->report->last_loss = loss;
      r->report->steps++;
    }
    grad_status cancel = report_step(r, epoch, s, loss, sum / seen, norm);
    if (cancel != GRAD_OK && s + 1 < r->steps_per_epoch) return cancel;
    if (cancel != GRAD_OK) st = cancel; /* on the epoch's last step: the epoch still counts */
    if (s + 1 == r->steps_per_epoch) {
      t->epoch = epoch + 1;
      if (r->report) {
        r->report->epochs_done = t->epoch;
        r->report->last_epoch_loss = sum / seen;
      }
      return st;
    }
  }
  return GRAD_OK;
}

grad_status grad__train_store(grad_store *store, grad__feature_cache *cache,
                              const grad_train_options *options, const char *resume_path,
                              grad__train_report *report) {
  double start = now_seconds();
  if (report) {
    memset(report, 0, sizeof *report);
    report->first_loss = report->last_loss = report->last_epoch_loss = NAN;
  }
  if (!store || !cache)
    return grad__fail(GRAD_E_INVALID_ARG, "grad__train_store: store or cache is NULL");
  grad_status st = check_cache(store, cache);
  if (st != GRAD_OK) return st;
  grad_train_options opts;
  st = grad__train_options_resolve(options, &opts);
  if (st != GRAD_OK) return st;
  int images = grad__feature_cache_count(cache);
  int max_batch = opts.batch < images ? opts.batch : images;
  run_state r = {0};
  r.cache = cache;
  r.images = images;
  r.steps_per_epoch = (images + opts.batch - 1) / opts.batch;
  r.report = report;
  r.start = start;
  r.order = grad__malloc_array((size_t)images, sizeof(int));
  if (!r.order) return grad__fail(GRAD_E_NOMEM, "out of memory for the image order");
  st = grad__trainer_create(store, &opts, max_batch, &r.trainer);
  if (st == GRAD_OK && resume_path)
    st = grad__train_checkpoint_load(r.trainer, images, resume_path);
  if (st == GRAD_OK) {
    grad__trainer *t = r.trainer;
    if (report) report->start_epoch = report->epochs_done = t->epoch;
    r.steps_planned = t->epoch < opts.epochs
                          ? (int64_t)(opts.epochs - t->epoch) * r.steps_per_epoch
                          : 0;
    for (int epoch = t->epoch; epoch < opts.epochs && st == GRAD_OK; epoch++) {
      st = run_epoch(&r, epoch);
      bool completed = t->epoch == epoch + 1; /* also when cancelled on its last step */
      bool last = epoch + 1 == opts.epochs;
      bool due = opts.checkpoint_every > 0 && (epoch + 1) % opts.checkpoint_every == 0;
      if (completed && opts.checkpoint_path && (due || last || st == GRAD_E_CANCELLED)) {
        grad_status saved = grad__train_checkpoint_save(t, images, opts.checkpoint_path);
        if (saved != GRAD_OK) st = saved;
      }
    }
  }
  grad__trainer_free(r.trainer);
  grad__free(r.order);
  if (report) report->seconds = now_seconds() - start;
  return st;
}

/* The experimental public call (<grad/store.h>): the loop above over the
 * caller's maps, wrapped without a copy. */
grad_status grad_store_train(grad_store *store, const float *features, int count,
                             const grad_train_options *options) {
  if (!store || !features || count < 1)
    return grad__fail(GRAD_E_INVALID_ARG, "grad_store_train: %s",
                      count < 1 ? "count < 1" : "store or features is NULL");
  grad_train_options opts;
  grad_status st = grad__train_options_resolve(options, &opts);
  if (st != GRAD_OK) return st;
  const grad__store_config *c = grad__store_config_of(store);
  grad__feature_cache *cache = NULL;
  st = grad__feature_cache_wrap(features, count, c->channels, c->height, c->width, &cache);
  if (st == GRAD_OK) st = grad__train_store(store, cache, &opts, opts.resume_path, NULL);
  grad__feature_cache_free(cache);
  return st;
}
