/*
 * grad_model_train: the whole training path of architecture.md, from
 * folders of normal images to a calibrated model:
 *   list images -> hold some out -> backbone features (once, cached) ->
 *   PCA fit + reduce -> train the store -> score the held-out images ->
 *   calibrate the head's thresholds.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "dataset.h"
#include "feature_cache.h"
#include "model_internal.h"
#include "train_internal.h"

enum { EXTRACT_BATCH = 8 };

/* Resolves a caller's options over the defaults (older, shorter structs
 * keep the defaults of the fields they do not have) and checks them. */
static grad_status resolve_options(const grad_model_options *in, grad_model_options *out) {
  grad_model_options_init(out);
  if (in) {
    if (in->struct_size < offsetof(grad_model_options, arch) || in->struct_size > sizeof *out)
      return grad__fail(GRAD_E_INVALID_ARG, "grad_model_options: bad struct_size %zu (call "
                        "grad_model_options_init)", in->struct_size);
    memcpy(out, in, in->struct_size);
    out->struct_size = sizeof *out;
  }
  if (!out->arch) return grad__fail(GRAD_E_INVALID_ARG, "grad_model_options: arch is NULL");
  if (out->channels < 1 || out->channels > 4096)
    return grad__fail(GRAD_E_INVALID_ARG, "grad_model_options: channels %d not in 1..4096",
                      out->channels);
  if (out->blocks < 0 || out->blocks > 64)
    return grad__fail(GRAD_E_INVALID_ARG, "grad_model_options: blocks %d not in 0..64",
                      out->blocks);
  if (out->local_res < 1 || out->local_res > 256 || out->global_res < 1 || out->global_res > 64)
    return grad__fail(GRAD_E_INVALID_ARG, "grad_model_options: grid resolutions %d / %d out of "
                      "range", out->local_res, out->global_res);
  if (!(out->holdout_fraction >= 0.0 && out->holdout_fraction < 1.0))
    return grad__fail(GRAD_E_INVALID_ARG, "grad_model_options: holdout_fraction %g not in [0, 1)",
                      out->holdout_fraction);
  return GRAD_OK;
}

/* Splits each folder's images into training and held-out ones, spreading
 * the held-out images evenly through the sorted list (deterministic). */
static grad_status split_folder(const grad__path_list *all, double fraction,
                                grad__path_list *train, grad__path_list *holdout) {
  size_t n = all->count, keep_out = (size_t)floor(n * fraction + 0.5);
  if (fraction > 0 && keep_out == 0 && n >= 5) keep_out = 1;
  if (keep_out >= n) keep_out = n - 1;
  grad_status s = GRAD_OK;
  for (size_t i = 0; s == GRAD_OK && i < n; i++) {
    /* image i is held out when the running quota crosses an integer */
    bool out = keep_out && (i + 1) * keep_out / n != i * keep_out / n;
    s = grad__path_list_add(out ? holdout : train, all->paths[i]);
  }
  return s;
}

static grad_status gather_images(const char *const *folders, int count, double fraction,
                                 grad__path_list *train, grad__path_list *holdout) {
  for (int f = 0; f < count; f++) {
    if (!folders[f]) return grad__fail(GRAD_E_INVALID_ARG, "grad_model_train: folder %d is NULL", f);
    grad__path_list all = {0};
    grad_status s = grad__training_images(folders[f], &all);
    if (s == GRAD_OK) s = split_folder(&all, fraction, train, holdout);
    grad__path_list_free(&all);
    if (s != GRAD_OK) return s;
  }
  return GRAD_OK;
}

static grad_status load_input(const char *path, int size, float *out) {
  grad_image *image = NULL;
  grad_status s = grad_image_load(path, &image);
  if (s == GRAD_OK) s = grad_image_to_tensor(image, size, out);
  grad_image_free(image);
  return s;
}

/* Backbone features of every training image into `raw` (n x C_raw x H x W),
 * in batches, feeding the PCA fit on the way. */
static grad_status extract_features(const grad_backbone *bb, const grad__path_list *images,
                                    grad__feature_cache *raw, grad__pca_fit *fit) {
  int size = grad_backbone_input_size(bb);
  size_t input_floats = 3 * (size_t)size * size;
  size_t positions = (size_t)grad_backbone_feature_height(bb) * grad_backbone_feature_width(bb);
  size_t feature_floats = (size_t)grad_backbone_feature_channels(bb) * positions;
  grad_workspace *ws = NULL;
  float *inputs = grad__malloc_array(EXTRACT_BATCH * input_floats, sizeof(float));
  float *features = grad__malloc_array(EXTRACT_BATCH * feature_floats, sizeof(float));
  grad_status s = grad_workspace_create(&ws);
  if (s == GRAD_OK && (!inputs || !features))
    s = grad__fail(GRAD_E_NOMEM, "out of memory extracting features");
  for (size_t first = 0; s == GRAD_OK && first < images->count; first += EXTRACT_BATCH) {
    int n = (int)(images->count - first < EXTRACT_BATCH ? images->count - first : EXTRACT_BATCH);
    for (int i = 0; s == GRAD_OK && i < n; i++)
      s = load_input(images->paths[first + i], size, inputs + i * input_floats);
    grad__ws_reset(ws);
    if (s == GRAD_OK) s = grad_backbone_features(bb, ws, inputs, n, features);
    if (s == GRAD_OK) s = grad__pca_fit_add(fit, features, n, positions, ws);
    for (int i = 0; s == GRAD_OK && i < n; i++)
      memcpy(grad__feature_cache_image(raw, (int)first + i), features + i * feature_floats,
             feature_floats * sizeof(float));
  }
  grad_workspace_free(ws);
  grad__free(inputs);
  grad__free(features);
  return s;
}

static grad_status reduce_features(const grad__pca *pca, const grad__feature_cache *raw,
                                   size_t positions, grad__feature_cache *reduced) {
  grad_workspace *ws = NULL;
  grad_status s = grad_workspace_create(&ws);
  for (int i = 0; s == GRAD_OK && i < grad__feature_cache_count(raw); i++) {
    grad__ws_reset(ws);
    s = grad__pca_apply(pca, grad__feature_cache_image_const(raw, i), 1, positions,
                        grad__feature_cache_image(reduced, i), ws);
  }
  grad_workspace_free(ws);
  return s;
}

/* Scores the held-out normal images and sets the head's thresholds. With
 * nothing held out, the training images stand in (documented: biased low). */
static grad_status calibrate(grad_model *model, const grad__path_list *holdout,
                             const grad__path_list *train) {
  const grad__path_list *images = holdout->count ? holdout : train;
  int size = grad_model_input_size(model);
  size_t map_pixels = (size_t)size * size;
  float *scores = grad__malloc_array(images->count, sizeof(float));
  float *maps = grad__malloc_array(images->count * map_pixels, sizeof(float));
  grad_context *ctx = NULL;
  grad_status s = grad_context_create(model, &ctx);
  if (s == GRAD_OK && (!scores || !maps))
    s = grad__fail(GRAD_E_NOMEM, "out of memory calibrating on %zu images", images->count);
  for (size_t i = 0; s == GRAD_OK && i < images->count; i++) {
    s = load_input(images->paths[i], size, ctx->input);
    if (s == GRAD_OK)
      s = grad__model_score_tensor(model, ctx, ctx->input, maps + i * map_pixels, &scores[i]);
  }
  if (s == GRAD_OK)
    s = grad_head_calibrate_normal(model->head, scores, maps, images->count, map_pixels, NULL);
  grad_context_free(ctx);
  grad__free(scores);
  grad__free(maps);
  return s;
}

static char *describe(const char *const *folders, int count) {
  size_t n = 1;
  for (int i = 0; i < count; i++) n += strlen(folders[i]) + 2;
  char *text = grad__malloc(n);
  if (!text) return NULL;
  text[0] = '\0';
  for (int i = 0; i < count; i++) {
    if (i) strcat(text, ", ");
    strcat(text, folders[i]);
  }
  return text;
}

grad_status grad_model_train(const grad_model_options *options,
                             const struct grad_train_options *train_options,
                             const char *const *folders, int folder_count, grad_model **out) {
  if (!out) return grad__fail(GRAD_E_INVALID_ARG, "grad_model_train: out is NULL");
  *out = NULL;
  if (!folders || folder_count < 1)
    return grad__fail(GRAD_E_INVALID_ARG, "grad_model_train: no folders given");
  grad_model_options opts;
  grad_status s = resolve_options(options, &opts);
  if (s != GRAD_OK) return s;
  grad_train_options topts;
  s = grad__train_options_resolve(train_options, &topts);
  if (s != GRAD_OK) return s;

  grad__path_list train = {0}, holdout = {0};
  grad_backbone *bb = NULL;
  grad__feature_cache *raw = NULL, *reduced = NULL;
  grad__pca_fit *fit = NULL;
  grad__pca *pca = NULL;
  grad_store *store = NULL;
  grad_head *head = NULL;
  char *description = NULL;

  s = gather_images(folders, folder_count, opts.holdout_fraction, &train, &holdout);
  if (s == GRAD_OK) {
    grad_backbone_options bo;
    grad_backbone_options_init(&bo);
    bo.arch = opts.arch;
    bo.weights_path = opts.weights_path;
    bo.random_seed = opts.random_seed;
    bo.layers = opts.layers;
    bo.input_size = opts.input_size;
    bo.output_stride = opts.output_stride;
    s = grad_backbone_create(&bo, &bb);
  }
  int h = 0, w = 0, raw_channels = 0;
  if (s == GRAD_OK) {
    h = grad_backbone_feature_height(bb);
    w = grad_backbone_feature_width(bb);
    raw_channels = grad_backbone_feature_channels(bb);
    s = grad__feature_cache_create((int)train.count, raw_channels, h, w,
                                   topts.memory_limit_bytes, NULL, &raw);
  }
  if (s == GRAD_OK) s = grad__pca_fit_create(raw_channels, &fit);
  if (s == GRAD_OK) s = extract_features(bb, &train, raw, fit);
  if (s == GRAD_OK) s = grad__pca_fit_finish(fit, opts.channels, &pca);
  if (s == GRAD_OK)
    s = grad__feature_cache_create((int)train.count, pca->channels, h, w,
                                   topts.memory_limit_bytes, NULL, &reduced);
  if (s == GRAD_OK) s = reduce_features(pca, raw, (size_t)h * w, reduced);
  grad__feature_cache_free(raw);
  raw = NULL;
  if (s == GRAD_OK) {
    grad__store_config config = {pca->channels, h, w, opts.local_res, opts.global_res,
                                 opts.blocks, GRAD__DECODER_BASIC, 0};
    s = grad__store_create(&config, opts.random_seed, &store);
  }
  if (s == GRAD_OK) s = grad__train_store(store, reduced, &topts, topts.resume_path, NULL);
  if (s == GRAD_OK) s = grad_head_create(opts.input_size, &head);
  if (s == GRAD_OK && !(description = describe(folders, folder_count)))
    s = grad__fail(GRAD_E_NOMEM, "out of memory");
  grad_model *model = NULL;
  if (s == GRAD_OK) {
    s = grad__model_assemble(bb, pca, store, head, description, &model);
    bb = NULL, pca = NULL, store = NULL, head = NULL; /* owned by the model now (or freed) */
  }
  if (s == GRAD_OK) s = grad__model_measure(model);
  if (s == GRAD_OK) s = calibrate(model, &holdout, &train);
  if (s == GRAD_OK) {
    *out = model;
    model = NULL;
  }
  grad_model_free(model);
  grad__free(description);
  grad_backbone_free(bb);
  grad__pca_fit_free(fit);
  grad__pca_free(pca);
  grad_store_free(store);
  grad_head_free(head);
  grad__feature_cache_free(reduced);
  grad__path_list_free(&train);
  grad__path_list_free(&holdout);
  return s;
}
