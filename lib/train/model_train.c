/*
 * grad_model_train, _files and _images: the whole training path of
 * architecture.md, from normal images (folders, a list of files, or images
 * in memory) to a calibrated model with its provenance:
 *   list images -> hold some out -> backbone features (once, cached) ->
 *   PCA fit + reduce -> train the store -> score the held-out images ->
 *   calibrate the head's thresholds.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "dataset.h"
#include "feature_cache.h"
#include "model_internal.h"
#include "train_internal.h"

enum { EXTRACT_BATCH = 8 };

static bool model_is_crad(const grad_model_options *o) {
  return o->decoder && strcmp(o->decoder, "crad") == 0;
}

/* Resolves a caller's options over the defaults (older, shorter structs
 * keep the defaults of the fields they do not have) and checks them. */
static const grad_model_options default_model = {
  .struct_size = sizeof(grad_model_options),
  .backbone = NULL,
  .channels = 64,
  .blocks = 2,
  .local_res = 8,
  .global_res = 4,
  .holdout_fraction = 0.1,
};

void grad_model_options_init(grad_model_options *options, size_t struct_size) {
  grad__struct_init(options, struct_size, &default_model, sizeof default_model);
}

/* Resolves a caller's options (and their backbone options) over the
 * defaults by the struct_size policy of core.h, and checks them. */
static grad_status resolve_options(const grad_model_options *in, grad_model_options *out,
                                   grad_backbone_options *backbone) {
  *out = default_model;
  grad_status s = grad__struct_read("grad_model_options", in,
                                    GRAD__STRUCT_MIN(grad_model_options, backbone), out,
                                    sizeof *out);
  if (s == GRAD_OK) s = grad__backbone_options_resolve(out->backbone, backbone);
  if (s != GRAD_OK) return s;
  out->backbone = backbone;
  if (out->channels < 1 || out->channels > 4096)
    return grad__fail(GRAD_E_INVALID_ARG, "grad_model_options: channels %d not in 1..4096",
                      out->channels);
  if (out->blocks < 0 || out->blocks > 64)
    return grad__fail(GRAD_E_INVALID_ARG, "grad_model_options: blocks %d not in 0..64",
                      out->blocks);
  if (out->local_res < 1 || out->local_res > 256 || out->global_res < 1 || out->global_res > 64)
    return grad__fail(GRAD_E_INVALID_ARG, "grad_model_options: grid resolutions %d / %d out of "
                      "range", out->local_res, out->global_res);
  if (out->decoder && strcmp(out->decoder, "basic") != 0 && strcmp(out->decoder, "crad") != 0)
    return grad__fail(GRAD_E_INVALID_ARG,
                      "grad_model_options: decoder \"%s\" is neither \"basic\" nor \"crad\"",
                      out->decoder);
  if (out->expansion < 0 || out->expansion > 16384 || (out->expansion && !model_is_crad(out)))
    return grad__fail(GRAD_E_INVALID_ARG,
                      "grad_model_options: expansion %d (for the \"crad\" decoder, 0 or 4..16384)",
                      out->expansion);
  if (!(out->holdout_fraction >= 0.0 && out->holdout_fraction < 1.0))
    return grad__fail(GRAD_E_INVALID_ARG, "grad_model_options: holdout_fraction %g not in [0, 1)",
                      out->holdout_fraction);
  return GRAD_OK;
}

/* The images a training call works on: files on disk, then images in
 * memory (the caller's, not copied). */
typedef struct image_set {
  grad__path_list files;
  const grad_image **images;
  size_t image_count;
} image_set;

static size_t image_set_count(const image_set *set) {
  return set->files.count + set->image_count;
}

static void image_set_free(image_set *set) {
  grad__path_list_free(&set->files);
  grad__free(set->images);
  memset(set, 0, sizeof *set);
}

static grad_status image_set_add_image(image_set *set, const grad_image *image) {
  const grad_image **grown = grad__realloc(set->images, (set->image_count + 1) * sizeof *grown);
  if (!grown) return grad__fail(GRAD_E_NOMEM, "out of memory listing training images");
  set->images = grown;
  set->images[set->image_count++] = image;
  return GRAD_OK;
}

/* The network input of image i of the set. */
static grad_status image_set_input(const image_set *set, size_t i, int size, float *out) {
  if (i >= set->files.count) {
    grad_status s = grad_image_to_tensor(set->images[i - set->files.count], size, out);
    return s == GRAD_OK ? s : grad__fail_context(s, "training image %zu: ", i - set->files.count);
  }
  grad_image *image = NULL;
  grad_status s = grad_image_load(set->files.paths[i], &image);
  if (s == GRAD_OK) s = grad_image_to_tensor(image, size, out);
  grad_image_free(image);
  return s;
}

/* How many of n images are held out, and whether image i is one of them:
 * spread evenly through the list, deterministic. */
static size_t holdout_count(size_t n, double fraction) {
  size_t keep_out = (size_t)floor((double)n * fraction + 0.5);
  if (fraction > 0 && keep_out == 0 && n >= 5) keep_out = 1;
  if (n && keep_out >= n) keep_out = n - 1;
  return keep_out;
}

static bool held_out(size_t i, size_t n, size_t keep_out) {
  /* image i is held out when the running quota crosses an integer */
  return keep_out && (i + 1) * keep_out / n != i * keep_out / n;
}

/* Splits a list of files (one folder's, or the caller's) into training and
 * held-out ones. */
static grad_status split_files(const char *const *paths, size_t n, double fraction,
                               image_set *train, image_set *holdout) {
  size_t keep_out = holdout_count(n, fraction);
  grad_status s = GRAD_OK;
  for (size_t i = 0; s == GRAD_OK && i < n; i++) {
    if (!paths[i]) return grad__fail(GRAD_E_INVALID_ARG, "training file %zu is NULL", i);
    s = grad__path_list_add(held_out(i, n, keep_out) ? &holdout->files : &train->files, paths[i]);
  }
  return s;
}

static grad_status gather_folders(const char *const *folders, int count, double fraction,
                                  image_set *train, image_set *holdout) {
  for (int f = 0; f < count; f++) {
    if (!folders[f]) return grad__fail(GRAD_E_INVALID_ARG, "grad_model_train: folder %d is NULL", f);
    grad__path_list all = {0};
    grad_status s = grad__training_images(folders[f], &all);
    if (s == GRAD_OK)
      s = split_files((const char *const *)all.paths, all.count, fraction, train, holdout);
    grad__path_list_free(&all);
    if (s != GRAD_OK) return s;
  }
  return GRAD_OK;
}

/* Progress of every phase (train.h): the caller's callback with the phase,
 * its units, and the time since the training call began. */
typedef struct reporter {
  const grad_train_options *user; /* the caller's options: progress, progress_user, epochs */
  double start, phase_start;
  int phase;
} reporter;

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static const char *phase_name(int phase) {
  return phase == GRAD_TRAIN_PHASE_FEATURES ? "feature extraction"
         : phase == GRAD_TRAIN_PHASE_REDUCTION ? "channel reduction"
         : phase == GRAD_TRAIN_PHASE_CALIBRATION ? "calibration" : "training";
}

/* Reports done of total units of phase; GRAD_E_CANCELLED when the
 * callback asks to stop, unless the phase cannot be stopped. */
static grad_status report_phase(reporter *r, int phase, int64_t done, int64_t total) {
  if (!r->user->progress) return GRAD_OK;
  double now = now_seconds();
  if (phase != r->phase) {
    r->phase = phase;
    r->phase_start = now;
  }
  grad_train_progress p;
  memset(&p, 0, sizeof p);
  p.struct_size = sizeof p;
  p.epochs = r->user->epochs;
  p.loss = p.epoch_loss = NAN;
  p.elapsed_seconds = now - r->start;
  p.eta_seconds = done > 0 ? (now - r->phase_start) / (double)done * (double)(total - done) : -1;
  p.phase = phase;
  p.phase_done = done;
  p.phase_total = total;
  if (r->user->progress(&p, r->user->progress_user) != 0 && phase != GRAD_TRAIN_PHASE_CALIBRATION)
    return grad__fail(GRAD_E_CANCELLED, "training cancelled by the progress callback during %s",
                      phase_name(phase));
  return GRAD_OK;
}

/* The store's per-step reports, with the time counted from the call's start. */
static int forward_step(const grad_train_progress *progress, void *user) {
  reporter *r = user;
  grad_train_progress p = *progress;
  p.elapsed_seconds = now_seconds() - r->start;
  r->phase = GRAD_TRAIN_PHASE_EPOCHS;
  return r->user->progress(&p, r->user->progress_user);
}

/* Backbone features of every training image into `raw` (n x C_raw x H x W),
 * in batches, feeding the PCA fit on the way. */
static grad_status extract_features(const grad_backbone *bb, const image_set *images,
                                    grad__feature_cache *raw, grad__pca_fit *fit, reporter *r) {
  int size = grad_backbone_input_size(bb);
  size_t input_floats = 3 * (size_t)size * size, count = image_set_count(images);
  size_t positions = (size_t)grad_backbone_feature_height(bb) * grad_backbone_feature_width(bb);
  size_t feature_floats = (size_t)grad_backbone_feature_channels(bb) * positions;
  grad_workspace *ws = NULL;
  float *inputs = grad__malloc_array(EXTRACT_BATCH * input_floats, sizeof(float));
  float *features = grad__malloc_array(EXTRACT_BATCH * feature_floats, sizeof(float));
  grad_status s = grad_workspace_create(&ws);
  if (s == GRAD_OK && (!inputs || !features))
    s = grad__fail(GRAD_E_NOMEM, "out of memory extracting features");
  for (size_t first = 0; s == GRAD_OK && first < count; first += EXTRACT_BATCH) {
    int n = (int)(count - first < EXTRACT_BATCH ? count - first : EXTRACT_BATCH);
    for (int i = 0; s == GRAD_OK && i < n; i++)
      s = image_set_input(images, first + i, size, inputs + i * input_floats);
    grad__ws_reset(ws);
    if (s == GRAD_OK) s = grad_backbone_features(bb, ws, inputs, n, features);
    if (s == GRAD_OK && fit) s = grad__pca_fit_add(fit, features, n, positions, ws);
    for (int i = 0; s == GRAD_OK && i < n; i++)
      memcpy(grad__feature_cache_image(raw, (int)first + i), features + i * feature_floats,
             feature_floats * sizeof(float));
    if (s == GRAD_OK)
      s = report_phase(r, GRAD_TRAIN_PHASE_FEATURES, (int64_t)(first + n), (int64_t)count);
  }
  grad_workspace_free(ws);
  grad__free(inputs);
  grad__free(features);
  return s;
}

static grad_status reduce_features(const grad__pca *pca, const grad__feature_cache *raw,
                                   size_t positions, grad__feature_cache *reduced, reporter *r) {
  grad_workspace *ws = NULL;
  grad_status s = grad_workspace_create(&ws);
  int count = grad__feature_cache_count(raw);
  for (int i = 0; s == GRAD_OK && i < count; i++) {
    grad__ws_reset(ws);
    s = grad__pca_apply(pca, grad__feature_cache_image_const(raw, i), 1, positions,
                        grad__feature_cache_image(reduced, i), ws);
    if (s == GRAD_OK) s = report_phase(r, GRAD_TRAIN_PHASE_REDUCTION, i + 1, count);
  }
  grad_workspace_free(ws);
  return s;
}

/* Scores the held-out normal images and sets the head's thresholds. With
 * nothing held out, the training images stand in (documented: biased low). */
static grad_status calibrate(grad_model *model, const image_set *holdout, const image_set *train,
                             reporter *r) {
  const image_set *images = image_set_count(holdout) ? holdout : train;
  size_t count = image_set_count(images);
  int size = grad_model_input_size(model);
  size_t map_pixels = (size_t)size * size;
  float *scores = grad__malloc_array(count, sizeof(float));
  float *maps = grad__malloc_array(count * map_pixels, sizeof(float));
  grad_context *ctx = NULL;
  grad_status s = grad_context_create(model, &ctx);
  if (s == GRAD_OK && (!scores || !maps))
    s = grad__fail(GRAD_E_NOMEM, "out of memory calibrating on %zu images", count);
  for (size_t i = 0; s == GRAD_OK && i < count; i++) {
    s = image_set_input(images, i, size, ctx->input);
    if (s == GRAD_OK)
      s = grad__model_score_tensor(model, ctx, ctx->input, maps + i * map_pixels, &scores[i]);
    /* Reported, not cancellable: it is short and the model needs it. */
    if (s == GRAD_OK) s = report_phase(r, GRAD_TRAIN_PHASE_CALIBRATION, (int64_t)i + 1, (int64_t)count);
  }
  if (s == GRAD_OK)
    s = grad_head_calibrate_normal(model->head, scores, maps, count, map_pixels, NULL);
  grad_context_free(ctx);
  grad__free(scores);
  grad__free(maps);
  return s;
}

/* "a, b, c" of the names given, for the model's description. */
static char *join_names(const char *const *names, size_t count) {
  size_t n = 1;
  for (size_t i = 0; i < count; i++) n += strlen(names[i]) + 2;
  char *text = grad__malloc(n);
  if (!text) return NULL;
  text[0] = '\0';
  for (size_t i = 0; i < count; i++) {
    if (i) strcat(text, ", ");
    strcat(text, names[i]);
  }
  return text;
}

/* Fewer held-out images than this make the calibrated thresholds rough. */
enum { CALIBRATION_MIN = 10 };

/* The first folder given twice (the same file system object), or NULL. */
static const char *repeated_folder(const char *const *folders, size_t count) {
  for (size_t i = 0; i < count; i++)
    for (size_t j = 0; j < i; j++) {
      struct stat a, b;
      if (stat(folders[i], &a) == 0 && stat(folders[j], &b) == 0 && a.st_dev == b.st_dev &&
          a.st_ino == b.st_ino)
        return folders[i];
    }
  return NULL;
}

/* What the model was trained on, then a "; warning: ..." for each sign of
 * degenerate training, so that the warnings travel with the model. */
static char *describe(grad__train_record *record) {
  char *source = NULL;
  if (record->folders) {
    source = join_names(record->folders, record->folder_count);
  } else {
    char text[96];
    snprintf(text, sizeof text, "%zu images %s", record->images + record->holdout_images,
             record->files ? "from a list of files" : "from memory");
    source = grad__strdup(text);
  }
  if (!source) return NULL;
  char warnings[1024] = "";
  size_t used = 0;
  if (record->holdout_images == 0)
    used += (size_t)snprintf(warnings + used, sizeof warnings - used,
                             "; warning: no image held out, the thresholds were calibrated on "
                             "the training images (biased low)");
  else if (record->holdout_images < CALIBRATION_MIN)
    used += (size_t)snprintf(warnings + used, sizeof warnings - used,
                             "; warning: the thresholds were calibrated on %zu held-out images "
                             "(fewer than %d make them rough)",
                             record->holdout_images, CALIBRATION_MIN);
  const char *twice = record->folders ? repeated_folder(record->folders, record->folder_count)
                                      : NULL;
  if (twice && used < sizeof warnings)
    used += (size_t)snprintf(warnings + used, sizeof warnings - used,
                             "; warning: the folder %.200s was given twice: its images count "
                             "twice and its held-out images were also trained on", twice);
  const char *note = record->train_options ? record->train_options->note : NULL;
  if (note && note[0] && used < sizeof warnings)
    snprintf(warnings + used, sizeof warnings - used, "; %.400s", note);
  if (!warnings[0]) return source;
  size_t n = strlen(source) + strlen(warnings) + 1;
  char *text = grad__malloc(n);
  if (text) snprintf(text, n, "%s%s", source, warnings);
  grad__free(source);
  return text;
}

/*
 * The path every public training call shares, from the split image sets
 * to a calibrated model. record carries the source and the resolved
 * options; the rest of it is filled here. A cancelled store training still
 * gives a model (train.h), with GRAD_E_CANCELLED.
 */
static grad_status train_model(const grad_model_options *opts, const grad_train_options *topts,
                               const image_set *train, const image_set *holdout,
                               grad__train_record *record, grad_model **out) {
  grad_backbone *bb = NULL;
  grad__feature_cache *raw = NULL, *reduced = NULL;
  grad__pca_fit *fit = NULL;
  grad__pca *pca = NULL;
  grad_store *store = NULL;
  grad_head *head = NULL;
  char *description = NULL, *cancelled = NULL;
  int train_count = (int)image_set_count(train);
  grad_status s = GRAD_OK;
  reporter rep = {topts, now_seconds(), now_seconds(), -1};
  grad_train_options store_options = *topts;
  if (topts->progress) {
    store_options.progress = forward_step;
    store_options.progress_user = &rep;
  }
  if (image_set_count(train) > (size_t)INT32_MAX)
    s = grad__fail(GRAD_E_TOO_LARGE, "%zu training images: more than the cache holds",
                   image_set_count(train));
  if (s == GRAD_OK) {
    s = grad_backbone_create(opts->backbone, &bb);
  }
  int h = 0, w = 0, raw_channels = 0;
  if (s == GRAD_OK) {
    h = grad_backbone_feature_height(bb);
    w = grad_backbone_feature_width(bb);
    raw_channels = grad_backbone_feature_channels(bb);
    s = grad__feature_cache_create(train_count, raw_channels, h, w, topts->memory_limit_bytes,
                                   NULL, &raw);
  }
  if (s == GRAD_OK) s = grad__pca_fit_create(raw_channels, &fit);
  if (s == GRAD_OK) s = extract_features(bb, train, raw, fit, &rep);
  if (s == GRAD_OK) s = report_phase(&rep, GRAD_TRAIN_PHASE_REDUCTION, 0, train_count);
  if (s == GRAD_OK) s = grad__pca_fit_finish(fit, opts->channels, &pca);
  if (s == GRAD_OK)
    s = grad__feature_cache_create(train_count, pca->channels, h, w, topts->memory_limit_bytes,
                                   NULL, &reduced);
  if (s == GRAD_OK) s = reduce_features(pca, raw, (size_t)h * w, reduced, &rep);
  grad__feature_cache_free(raw);
  raw = NULL;
  if (s == GRAD_OK) {
    grad__store_config config = {pca->channels, h, w, opts->local_res, opts->global_res,
                                 opts->blocks, GRAD__DECODER_BASIC, 0};
    s = grad__store_decoder_set(&config, opts->decoder, opts->expansion);
    if (s == GRAD_OK) s = grad__store_create(&config, opts->backbone->random_seed, &store);
  }
  grad__train_report report;
  memset(&report, 0, sizeof report);
  if (s == GRAD_OK) {
    s = grad__train_store(store, reduced, &store_options, topts->resume_path, &report);
    if (s == GRAD_E_CANCELLED) {
      /* The store holds the last completed step: finish the model with it
       * (a stop in an earlier phase has no model to give). */
      if (!(cancelled = grad__strdup(grad_last_error())))
        s = grad__fail(GRAD_E_NOMEM, "out of memory");
      else
        s = GRAD_OK;
    }
  }
  record->images = image_set_count(train);
  record->holdout_images = image_set_count(holdout);
  record->epochs_done = report.epochs_done;
  record->cancelled = cancelled != NULL;
  record->resumed = topts->resume_path != NULL;
  if (s == GRAD_OK) s = grad_head_create(opts->backbone->input_size, &head);
  if (s == GRAD_OK && !(description = describe(record)))
    s = grad__fail(GRAD_E_NOMEM, "out of memory");
  grad_model *model = NULL;
  if (s == GRAD_OK) {
    s = grad__model_assemble(bb, pca, store, head, description, &model);
    bb = NULL, pca = NULL, store = NULL, head = NULL; /* owned by the model now (or freed) */
  }
  if (s == GRAD_OK) s = grad__model_measure(model);
  if (s == GRAD_OK) s = calibrate(model, holdout, train, &rep);
  if (s == GRAD_OK) s = grad__train_record_provenance(model, record);
  if (s == GRAD_OK) {
    *out = model;
    model = NULL;
    if (cancelled) s = grad__fail(GRAD_E_CANCELLED, "%s", cancelled);
  }
  grad_model_free(model);
  grad__free(description);
  grad__free(cancelled);
  grad_backbone_free(bb);
  grad__pca_fit_free(fit);
  grad__pca_free(pca);
  grad_store_free(store);
  grad_head_free(head);
  grad__feature_cache_free(reduced);
  return s;
}

/* What every public training call does first: check out and resolve both
 * option structs. */
static grad_status begin(const grad_model_options *options,
                         const grad_train_options *train_options, grad_model **out,
                         grad_model_options *opts, grad_backbone_options *backbone,
                         grad_train_options *topts) {
  if (!out) return grad__fail(GRAD_E_INVALID_ARG, "grad_model_train: out is NULL");
  *out = NULL;
  grad_status s = resolve_options(options, opts, backbone);
  if (s == GRAD_OK) s = grad__train_options_resolve(train_options, topts);
  return s;
}

grad_status grad_model_train(const grad_model_options *options,
                             const grad_train_options *train_options,
                             const char *const *folders, int folder_count, grad_model **out) {
  grad_model_options opts;
  grad_backbone_options bo; /* opts.backbone points here */
  grad_train_options topts;
  grad_status s = begin(options, train_options, out, &opts, &bo, &topts);
  if (s != GRAD_OK) return s;
  if (!folders || folder_count < 1)
    return grad__fail(GRAD_E_INVALID_ARG, "grad_model_train: no folders given");
  image_set train = {0}, holdout = {0};
  s = gather_folders(folders, folder_count, opts.holdout_fraction, &train, &holdout);
  grad__train_record record = {.source = "folders", .folders = folders,
                               .folder_count = (size_t)folder_count, .model_options = &opts,
                               .train_options = &topts};
  if (s == GRAD_OK) s = train_model(&opts, &topts, &train, &holdout, &record, out);
  image_set_free(&train);
  image_set_free(&holdout);
  return s;
}

grad_status grad_model_train_files(const grad_model_options *options,
                                   const grad_train_options *train_options,
                                   const char *const *paths, size_t count, grad_model **out) {
  grad_model_options opts;
  grad_backbone_options bo; /* opts.backbone points here */
  grad_train_options topts;
  grad_status s = begin(options, train_options, out, &opts, &bo, &topts);
  if (s != GRAD_OK) return s;
  if (!paths || count < 1)
    return grad__fail(GRAD_E_INVALID_ARG, "grad_model_train_files: no files given");
  image_set train = {0}, holdout = {0};
  s = split_files(paths, count, opts.holdout_fraction, &train, &holdout);
  grad__train_record record = {.source = "files", .files = paths, .file_count = count,
                               .model_options = &opts, .train_options = &topts};
  if (s == GRAD_OK) s = train_model(&opts, &topts, &train, &holdout, &record, out);
  image_set_free(&train);
  image_set_free(&holdout);
  return s;
}

grad_status grad_model_train_images(const grad_model_options *options,
                                    const grad_train_options *train_options,
                                    const grad_image *const *images, size_t count,
                                    grad_model **out) {
  grad_model_options opts;
  grad_backbone_options bo; /* opts.backbone points here */
  grad_train_options topts;
  grad_status s = begin(options, train_options, out, &opts, &bo, &topts);
  if (s != GRAD_OK) return s;
  if (!images || count < 1)
    return grad__fail(GRAD_E_INVALID_ARG, "grad_model_train_images: no images given");
  image_set train = {0}, holdout = {0};
  size_t keep_out = holdout_count(count, opts.holdout_fraction);
  for (size_t i = 0; s == GRAD_OK && i < count; i++) {
    if (!images[i])
      s = grad__fail(GRAD_E_INVALID_ARG, "grad_model_train_images: image %zu is NULL", i);
    else
      s = image_set_add_image(held_out(i, count, keep_out) ? &holdout : &train, images[i]);
  }
  grad__train_record record = {.source = "memory", .model_options = &opts,
                               .train_options = &topts};
  if (s == GRAD_OK) s = train_model(&opts, &topts, &train, &holdout, &record, out);
  image_set_free(&train);
  image_set_free(&holdout);
  return s;
}

/*
 * Continues a saved model's training on new folders: its backbone and
 * channel reduction stay, its store trains on the reduced features of the
 * folders' images with a fresh optimiser, and the head is calibrated again
 * on their held-out images (the default fraction).
 */
grad_status grad_model_train_more(const char *model_path, const grad_train_options *train_options,
                                  const char *const *folders, int folder_count,
                                  grad_model **out) {
  if (!out) return grad__fail(GRAD_E_INVALID_ARG, "grad_model_train_more: out is NULL");
  *out = NULL;
  if (!model_path) return grad__fail(GRAD_E_INVALID_ARG, "grad_model_train_more: model_path is NULL");
  if (!folders || folder_count < 1)
    return grad__fail(GRAD_E_INVALID_ARG, "grad_model_train_more: no folders given");
  grad_train_options topts;
  grad_status s = grad__train_options_resolve(train_options, &topts);
  if (s == GRAD_OK && topts.resume_path)
    s = grad__fail(GRAD_E_INVALID_ARG, "grad_model_train_more: resume_path is not supported "
                   "(resume the interrupted grad_model_train_more with a new call)");
  if (s != GRAD_OK) return s;
  grad_model_options defaults;
  grad_model_options_init(&defaults, sizeof defaults);
  grad_model *model = NULL;
  image_set train = {0}, holdout = {0};
  grad__feature_cache *raw = NULL, *reduced = NULL;
  char *cancelled = NULL, *description = NULL;
  s = grad_model_load(model_path, &model);
  if (s == GRAD_OK) s = gather_folders(folders, folder_count, defaults.holdout_fraction, &train, &holdout);
  int count = (int)image_set_count(&train), h = 0, w = 0;
  if (s == GRAD_OK && image_set_count(&train) > (size_t)INT32_MAX)
    s = grad__fail(GRAD_E_TOO_LARGE, "%zu training images: more than the cache holds",
                   image_set_count(&train));
  if (s == GRAD_OK) {
    h = grad_backbone_feature_height(model->backbone);
    w = grad_backbone_feature_width(model->backbone);
    s = grad__feature_cache_create(count, grad_backbone_feature_channels(model->backbone), h, w,
                                   topts.memory_limit_bytes, NULL, &raw);
  }
  reporter rep = {&topts, now_seconds(), now_seconds(), -1};
  grad_train_options store_options = topts;
  if (topts.progress) {
    store_options.progress = forward_step;
    store_options.progress_user = &rep;
  }
  if (s == GRAD_OK) s = extract_features(model->backbone, &train, raw, NULL, &rep);
  if (s == GRAD_OK)
    s = grad__feature_cache_create(count, model->reduce->channels, h, w, topts.memory_limit_bytes,
                                   NULL, &reduced);
  if (s == GRAD_OK) s = reduce_features(model->reduce, raw, (size_t)h * w, reduced, &rep);
  grad__feature_cache_free(raw);
  grad__train_report report;
  memset(&report, 0, sizeof report);
  if (s == GRAD_OK) {
    s = grad__train_store(model->store, reduced, &store_options, NULL, &report);
    if (s == GRAD_E_CANCELLED) { /* as grad_model_train: the last completed step */
      if (!(cancelled = grad__strdup(grad_last_error())))
        s = grad__fail(GRAD_E_NOMEM, "out of memory");
      else
        s = GRAD_OK;
    }
  }
  if (s == GRAD_OK) s = calibrate(model, &holdout, &train, &rep);
  if (s == GRAD_OK) {
    char *more = join_names(folders, (size_t)folder_count);
    size_t n = strlen(model->description) + (more ? strlen(more) : 0) + 64;
    description = more ? grad__malloc(n) : NULL;
    if (!description) {
      s = grad__fail(GRAD_E_NOMEM, "out of memory");
    } else {
      snprintf(description, n, "%s; then %d more epochs on %s", model->description,
               report.epochs_done, more);
      grad__free(model->description);
      model->description = description;
    }
    grad__free(more);
  }
  if (s == GRAD_OK) {
    char text[32];
    snprintf(text, sizeof text, "%d", report.epochs_done);
    s = grad__provenance_set(&model->provenance, "more_epochs", text);
    if (s == GRAD_OK) s = grad__provenance_set(&model->provenance, "more_status",
                                               cancelled ? "cancelled" : "complete");
  }
  if (s == GRAD_OK) {
    *out = model;
    model = NULL;
    if (cancelled) s = grad__fail(GRAD_E_CANCELLED, "%s", cancelled);
  }
  grad_model_free(model);
  grad__free(cancelled);
  grad__feature_cache_free(reduced);
  image_set_free(&train);
  image_set_free(&holdout);
  return s;
}
