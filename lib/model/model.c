/* grad_model: assembling, saving, loading and scoring. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "head_internal.h"
#include "model_internal.h"
#include "safetensors.h"

#define CHECKSUM_KEY "data_crc32"

grad_status grad__model_assemble(grad_backbone *backbone, grad__pca *reduce, grad_store *store,
                                 grad_head *head, const char *description, grad_model **out) {
  *out = NULL;
  grad_model *model = grad__calloc(1, sizeof *model);
  char *text = grad__strdup(description ? description : "");
  if (!model || !text) {
    grad__free(model), grad__free(text);
    grad_backbone_free(backbone), grad__pca_free(reduce), grad_store_free(store);
    grad_head_free(head);
    return grad__fail(GRAD_E_NOMEM, "out of memory assembling a model");
  }
  model->backbone = backbone;
  model->reduce = reduce;
  model->store = store;
  model->head = head;
  model->description = text;
  *out = model;
  return GRAD_OK;
}

void grad_model_free(grad_model *model) {
  if (!model) return;
  grad_backbone_free(model->backbone);
  grad__pca_free(model->reduce);
  grad_store_free(model->store);
  grad_head_free(model->head);
  grad__free(model->description);
  grad__provenance_free(&model->provenance);
  grad__free(model);
}

const grad_backbone *grad_model_backbone(const grad_model *model) {
  return model ? model->backbone : NULL;
}

const grad_reduction *grad_model_reduction(const grad_model *model) {
  return model ? grad__reduction_of(model->reduce) : NULL;
}

const grad_store *grad_model_store(const grad_model *model) {
  return model ? model->store : NULL;
}

const grad_head *grad_model_head(const grad_model *model) {
  return model ? model->head : NULL;
}

int grad_model_input_size(const grad_model *model) {
  return model ? grad_backbone_input_size(model->backbone) : 0;
}

double grad_model_image_threshold(const grad_model *model) {
  return model ? grad_head_image_threshold(model->head) : NAN;
}

const char *grad_model_description(const grad_model *model) {
  return model ? model->description : "";
}

/* ---- Files --------------------------------------------------------------- */

grad_status grad_model_save(const grad_model *model, const char *path) {
  if (!model || !path) return grad__fail(GRAD_E_INVALID_ARG, "grad_model_save: NULL argument");
  grad__st_writer *w = NULL;
  grad_status s = grad__st_writer_create(&w);
  if (s != GRAD_OK) return s;
  char version[16];
  snprintf(version, sizeof version, "%d", GRAD__MODEL_FORMAT_VERSION);
  if (s == GRAD_OK) s = grad__st_writer_meta(w, "format", GRAD__MODEL_FORMAT);
  if (s == GRAD_OK) s = grad__st_writer_meta(w, "format_version", version);
  if (s == GRAD_OK) s = grad__st_writer_meta(w, "created_by", grad_version_string());
  if (s == GRAD_OK) s = grad__st_writer_meta(w, "model.trained_on", model->description);
  if (s == GRAD_OK) s = grad__provenance_write(&model->provenance, w);
  if (s == GRAD_OK) s = grad__backbone_write(model->backbone, w, "backbone.");
  if (s == GRAD_OK) s = grad__pca_write(model->reduce, w);
  if (s == GRAD_OK) s = grad__store_write(model->store, w);
  if (s == GRAD_OK) s = grad__head_write(model->head, w);
  char crc[16];
  snprintf(crc, sizeof crc, "%08x", (unsigned)grad__st_writer_data_crc32(w));
  if (s == GRAD_OK) s = grad__st_writer_meta(w, CHECKSUM_KEY, crc);
  if (s == GRAD_OK) s = grad__st_writer_save(w, path);
  grad__st_writer_free(w);
  return s;
}

/* Finite but corrupt weights (a flipped exponent bit) score every image
 * wildly; only a checksum of the data tells. Files of version 1 have none. */
static grad_status check_checksum(const grad__st_file *f, const char *path, long version) {
  if (version < 2) return GRAD_OK;
  const char *stored = grad__st_meta(f, CHECKSUM_KEY);
  if (!stored)
    return grad__fail(GRAD_E_MISSING, "%s: metadata \"%s\" (the checksum of the tensor data, "
                      "required from format version 2) is missing", path, CHECKSUM_KEY);
  char *end = NULL;
  unsigned long want = strtoul(stored, &end, 16);
  if (strlen(stored) != 8 || *end != '\0')
    return grad__fail(GRAD_E_FORMAT, "%s: metadata \"%s\" = \"%s\" is not 8 hex digits", path,
                      CHECKSUM_KEY, stored);
  uint32_t got = grad__st_data_crc32(f);
  if (got != (uint32_t)want)
    return grad__fail(GRAD_E_FORMAT,
                      "%s: the tensor data is corrupt: its CRC-32 is %08x, metadata \"%s\" says "
                      "%s",
                      path, (unsigned)got, CHECKSUM_KEY, stored);
  return GRAD_OK;
}

static grad_status check_format(const grad__st_file *f, const char *path, long *version_out) {
  const char *format = grad__st_meta(f, "format");
  const char *version = grad__st_meta(f, "format_version");
  if (!format || strcmp(format, GRAD__MODEL_FORMAT) != 0)
    return grad__fail(GRAD_E_FORMAT, "%s: not a libgrad model (metadata \"format\" is %s%s%s)",
                      path, format ? "\"" : "", format ? format : "missing",
                      format ? "\"" : "");
  char *end = NULL;
  long v = version ? strtol(version, &end, 10) : 0;
  if (!version || *end != '\0' || v < 1)
    return grad__fail(GRAD_E_FORMAT, "%s: bad \"format_version\" %s", path,
                      version ? version : "(missing)");
  if (v > GRAD__MODEL_FORMAT_VERSION)
    return grad__fail(GRAD_E_VERSION,
                      "%s: model format version %ld is newer than this libgrad %s reads (%d)",
                      path, v, grad_version_string(), GRAD__MODEL_FORMAT_VERSION);
  if (version_out) *version_out = v;
  return GRAD_OK;
}

/* The parts must fit together: reduction input = backbone output, store
 * input = reduction output, store map size = backbone map size. */
static grad_status check_consistent(const grad_model *m, const char *path) {
  int raw = grad_backbone_feature_channels(m->backbone);
  int h = grad_backbone_feature_height(m->backbone), w = grad_backbone_feature_width(m->backbone);
  if (m->reduce->raw_channels != raw)
    return grad__fail(GRAD_E_SHAPE, "%s: reduction takes %d channels, the backbone gives %d",
                      path, m->reduce->raw_channels, raw);
  if (grad_store_channels(m->store) != m->reduce->channels || grad_store_height(m->store) != h ||
      grad_store_width(m->store) != w)
    return grad__fail(GRAD_E_SHAPE,
                      "%s: store expects %d x %d x %d features, backbone + reduction give "
                      "%d x %d x %d",
                      path, grad_store_channels(m->store), grad_store_height(m->store),
                      grad_store_width(m->store), m->reduce->channels, h, w);
  if (grad_head_size(m->head) != grad_backbone_input_size(m->backbone))
    return grad__fail(GRAD_E_SHAPE, "%s: head size %d differs from the input size %d", path,
                      grad_head_size(m->head), grad_backbone_input_size(m->backbone));
  return GRAD_OK;
}

grad_status grad_model_load(const char *path, grad_model **out) {
  if (!out) return grad__fail(GRAD_E_INVALID_ARG, "grad_model_load: out is NULL");
  *out = NULL;
  if (!path) return grad__fail(GRAD_E_INVALID_ARG, "grad_model_load: path is NULL");
  grad__st_file *f = NULL;
  grad_status s = grad__st_open(path, &f);
  if (s != GRAD_OK) return s;
  grad_backbone *backbone = NULL;
  grad__pca *reduce = NULL;
  grad_store *store = NULL;
  grad_head *head = NULL;
  long version = 0;
  s = check_format(f, path, &version);
  if (s == GRAD_OK) s = check_checksum(f, path, version);
  if (s == GRAD_OK) s = grad__backbone_read(f, "backbone.", &backbone);
  if (s == GRAD_OK) s = grad__pca_read(f, &reduce);
  if (s == GRAD_OK) s = grad__store_read(f, &store);
  if (s == GRAD_OK) s = grad__head_read(f, &head);
  if (s == GRAD_OK && grad_head_image_rule(head) == GRAD_THRESHOLD_NONE)
    s = grad__fail(GRAD_E_FORMAT, "%s: metadata \"head.image_rule\" is \"none\": the model has "
                   "no image threshold, so every image would be called good", path);
  const char *trained_on = grad__st_meta(f, "model.trained_on");
  if (s == GRAD_OK) {
    s = grad__model_assemble(backbone, reduce, store, head, trained_on, out);
    if (s == GRAD_OK) s = grad__provenance_read(f, &(*out)->provenance);
  } else {
    grad_backbone_free(backbone), grad__pca_free(reduce), grad_store_free(store);
    grad_head_free(head);
    if (!strstr(grad_last_error(), path)) grad__fail_context(s, "%s", path);
  }
  grad__st_close(f);
  if (s == GRAD_OK && (s = check_consistent(*out, path)) == GRAD_OK) s = grad__model_measure(*out);
  if (s != GRAD_OK && *out) {
    grad_model_free(*out);
    *out = NULL;
  }
  return s;
}

/* ---- Memory -------------------------------------------------------------- */

static size_t context_buffer_floats(const grad_model *model) {
  size_t s = (size_t)grad_model_input_size(model);
  size_t hw = (size_t)grad_store_height(model->store) * grad_store_width(model->store);
  return 3 * s * s + ((size_t)model->reduce->raw_channels + 2 * (size_t)model->reduce->channels) * hw;
}

grad_status grad__model_measure(grad_model *model) {
  grad_context *ctx = NULL;
  size_t size = (size_t)grad_model_input_size(model);
  float *map = grad__malloc_array(size * size, sizeof(float));
  grad_status s = map ? grad_context_create(model, &ctx)
                      : grad__fail(GRAD_E_NOMEM, "out of memory measuring a model");
  float score;
  if (s == GRAD_OK) {
    memset(ctx->input, 0, 3 * size * size * sizeof(float));
    s = grad__model_score_tensor(model, ctx, ctx->input, map, &score);
  }
  if (s == GRAD_OK) {
    grad__ws_reset(ctx->ws); /* merges what the pass used into one block of its peak */
    model->workspace_bytes = grad_workspace_bytes(ctx->ws);
  }
  grad_context_free(ctx);
  grad__free(map);
  return s;
}

size_t grad_model_bytes(const grad_model *model) {
  if (!model) return 0;
  size_t floats = model->backbone->storage_floats;
  floats += (size_t)model->reduce->raw_channels * (1 + (size_t)model->reduce->channels);
  grad_store *store = model->store;
  for (size_t i = 0; i < grad__store_param_count(store); i++)
    floats += grad__store_param(store, i)->count;
  for (size_t i = 0; i < grad__store_buffer_count(store); i++)
    floats += grad__store_buffer(store, i)->count;
  return floats * sizeof(float);
}

size_t grad_model_engine_bytes(const grad_model *model) {
  if (!model) return 0;
  return grad__bb_dnnl_weight_bytes(model->backbone) + grad__store_engine_bytes(model->store);
}

size_t grad_context_bytes(const grad_model *model) {
  return model ? context_buffer_floats(model) * sizeof(float) + model->workspace_bytes : 0;
}

grad_status grad_model_file_bytes(const char *path, size_t *bytes) {
  if (!path || !bytes) return grad__fail(GRAD_E_INVALID_ARG, "grad_model_file_bytes: NULL argument");
  *bytes = 0;
  grad__st_file *f = NULL;
  grad_status s = grad__st_open(path, &f);
  if (s == GRAD_OK) s = check_format(f, path, NULL);
  for (size_t i = 0; s == GRAD_OK && i < grad__st_count(f); i++)
    *bytes += grad__st_at(f, i)->count * sizeof(float);
  grad__st_close(f);
  return s;
}

/* ---- Scoring ------------------------------------------------------------- */

grad_status grad_context_create(const grad_model *model, grad_context **out) {
  if (!out) return grad__fail(GRAD_E_INVALID_ARG, "grad_context_create: out is NULL");
  *out = NULL;
  if (!model) return grad__fail(GRAD_E_INVALID_ARG, "grad_context_create: model is NULL");
  size_t s = (size_t)grad_model_input_size(model);
  size_t hw = (size_t)grad_store_height(model->store) * grad_store_width(model->store);
  grad_context *ctx = grad__calloc(1, sizeof *ctx);
  if (!ctx) return grad__fail(GRAD_E_NOMEM, "out of memory creating a scoring context");
  ctx->model = model;
  ctx->input = grad__malloc_array(3 * s * s, sizeof(float));
  ctx->raw = grad__malloc_array((size_t)model->reduce->raw_channels * hw, sizeof(float));
  ctx->features = grad__malloc_array((size_t)model->reduce->channels * hw, sizeof(float));
  ctx->recon = grad__malloc_array((size_t)model->reduce->channels * hw, sizeof(float));
  grad_status st = grad_workspace_create(&ctx->ws);
  if (st == GRAD_OK && model->workspace_bytes) st = grad__ws_reserve(ctx->ws, model->workspace_bytes);
  if (st != GRAD_OK || !ctx->input || !ctx->raw || !ctx->features || !ctx->recon) {
    grad_context_free(ctx);
    return grad__fail(GRAD_E_NOMEM, "out of memory creating a scoring context");
  }
  *out = ctx;
  return GRAD_OK;
}

grad_status grad_model_compute_set(grad_model *model, grad_engine engine,
                                   grad_precision precision) {
  if (!model) return grad__fail(GRAD_E_INVALID_ARG, "grad_model_compute_set: model is NULL");
  grad_status st = grad_backbone_compute_set(model->backbone, engine, precision);
  if (st == GRAD_OK) grad__store_precision_set(model->store, precision);
  return st;
}

void grad_context_threads_set(grad_context *ctx, int threads) {
  if (ctx) grad_workspace_threads_set(ctx->ws, threads);
}

void grad_context_free(grad_context *ctx) {
  if (!ctx) return;
  grad_workspace_free(ctx->ws);
  grad__free(ctx->input);
  grad__free(ctx->raw);
  grad__free(ctx->features);
  grad__free(ctx->recon);
  grad__free(ctx->group_input);
  grad__free(ctx->group_raw);
  grad__free(ctx->group_features);
  grad__free(ctx->group_recon);
  for (int i = 0; i < GRAD__SCORE_GROUP; i++) grad_workspace_free(ctx->part_ws[i]);
  grad__free(ctx);
}

grad_status grad__model_score_tensor(const grad_model *model, grad_context *ctx,
                                     const float *input, float *map, float *score) {
  const grad__pca *pca = model->reduce;
  int h = grad_store_height(model->store), w = grad_store_width(model->store);
  size_t hw = (size_t)h * w;
  grad__ws_reset(ctx->ws);
  grad_status s = grad_backbone_features(model->backbone, ctx->ws, input, 1, ctx->raw);
  if (s == GRAD_OK) s = grad__pca_apply(pca, ctx->raw, 1, hw, ctx->features, ctx->ws);
  if (s == GRAD_OK)
    s = grad__store_reconstruct(model->store, ctx->ws, ctx->features, 1, ctx->recon);
  if (s == GRAD_OK)
    s = grad_head_map(model->head, ctx->ws, ctx->recon, ctx->features, pca->channels, h, w,
                      map, score);
  return s;
}

void grad_result_free(grad_result *result) {
  if (!result) return;
  grad__free(result->map);
  grad__free(result->mask);
  grad__free(result->model_map);
  grad__free(result);
}

/* The mask is thresholded at S x S, where the pixel threshold was
 * calibrated, then brought to the image's size with nearest neighbour (the
 * resized map's peaks are a little lower, so thresholding it would shrink
 * the mask). */
static grad_status mask_at_image_size(const grad_model *model, grad_result *r) {
  size_t model_pixels = (size_t)r->size * r->size;
  uint8_t *small = grad__malloc(model_pixels);
  if (!small) return grad__fail(GRAD_E_NOMEM, "out of memory making a mask");
  grad_image *square = NULL, *resized = NULL;
  grad_status s = grad_head_mask(model->head, r->model_map, model_pixels, small);
  if (s == GRAD_OK) s = grad_image_from_pixels(small, r->size, r->size, 1, (size_t)r->size, &square);
  if (s == GRAD_OK)
    s = grad_image_resize(square, r->width, r->height, GRAD_RESIZE_NEAREST, &resized);
  if (s == GRAD_OK) memcpy(r->mask, grad_image_pixels(resized), (size_t)r->width * r->height);
  grad_image_free(square);
  grad_image_free(resized);
  grad__free(small);
  return s;
}

/* A result for an image of width x height: its buffers, nothing scored yet. */
static grad_status result_create(const grad_model *model, const grad_image *image,
                                 grad_result **out) {
  int size = grad_model_input_size(model);
  int width = grad_image_width(image), height = grad_image_height(image);
  size_t pixels = (size_t)width * height;
  /* The result holds a float map and a mask at the image's size: about 6
   * bytes a pixel on top of the image's 3 (docs/guide.md, memory). */
  grad_image_limits limits;
  grad_image_limits_get(&limits);
  if (pixels > limits.max_pixels)
    return grad__fail(GRAD_E_TOO_LARGE,
                      "grad_model_score: image of %d x %d pixels is over the limit of %llu "
                      "pixels (max_pixels: raise it with grad_image_limits_set)",
                      width, height, (unsigned long long)limits.max_pixels);
  grad_result *r = grad__calloc(1, sizeof *r);
  if (!r) return grad__fail(GRAD_E_NOMEM, "out of memory scoring an image");
  r->size = size;
  r->width = width;
  r->height = height;
  r->model_map = grad__malloc_array((size_t)size * size, sizeof(float));
  r->map = grad__malloc_array(pixels, sizeof(float));
  bool masks = !isnan(grad_head_pixel_threshold(model->head));
  if (masks) r->mask = grad__malloc(pixels);
  if (!r->model_map || !r->map || (masks && !r->mask)) {
    grad_result_free(r);
    return grad__fail(GRAD_E_NOMEM, "out of memory scoring a %dx%d image", width, height);
  }
  *out = r;
  return GRAD_OK;
}

/* From the S x S map and the score: the map at the image's size, the
 * mask and the decision. */
static grad_status result_finish(const grad_model *model, grad_result *r, float score) {
  grad_status s = grad_head_resize_map(model->head, r->model_map, r->width, r->height, r->map);
  if (s == GRAD_OK && r->mask) s = mask_at_image_size(model, r);
  r->score = score;
  r->normalized = grad_head_normalize_score(model->head, score);
  r->anomalous = grad_head_is_anomalous(model->head, score);
  return s;
}

static grad_status check_score_args(const grad_model *model, const grad_context *ctx,
                                    const char *call) {
  if (!model || !ctx)
    return grad__fail(GRAD_E_INVALID_ARG, "%s: NULL model or context", call);
  if (ctx->model != model)
    return grad__fail(GRAD_E_INVALID_ARG, "%s: the context belongs to another model", call);
  return GRAD_OK;
}

grad_status grad_model_score(const grad_model *model, grad_context *ctx, const grad_image *image,
                             grad_result **out) {
  if (!out) return grad__fail(GRAD_E_INVALID_ARG, "grad_model_score: out is NULL");
  *out = NULL;
  grad_status s = check_score_args(model, ctx, "grad_model_score");
  if (s != GRAD_OK) return s;
  if (!image) return grad__fail(GRAD_E_INVALID_ARG, "grad_model_score: image is NULL");
  grad_result *r = NULL;
  s = result_create(model, image, &r);
  float score = 0;
  if (s == GRAD_OK) s = grad_image_to_tensor(image, r->size, ctx->input);
  if (s == GRAD_OK) s = grad__model_score_tensor(model, ctx, ctx->input, r->model_map, &score);
  if (s == GRAD_OK) s = result_finish(model, r, score);
  if (s != GRAD_OK) {
    grad_result_free(r);
    return s;
  }
  *out = r;
  return GRAD_OK;
}

/* The context's buffers for groups of GRAD__SCORE_GROUP images, made on
 * the first batch call. */
static grad_status ensure_group_buffers(const grad_model *model, grad_context *ctx) {
  if (ctx->group_input) return GRAD_OK;
  size_t s = (size_t)grad_model_input_size(model);
  size_t hw = (size_t)grad_store_height(model->store) * grad_store_width(model->store);
  size_t g = GRAD__SCORE_GROUP;
  ctx->group_input = grad__malloc_array(g * 3 * s * s, sizeof(float));
  ctx->group_raw = grad__malloc_array(g * (size_t)model->reduce->raw_channels * hw, sizeof(float));
  ctx->group_features = grad__malloc_array(g * (size_t)model->reduce->channels * hw, sizeof(float));
  ctx->group_recon = grad__malloc_array(g * (size_t)model->reduce->channels * hw, sizeof(float));
  if (!ctx->group_input || !ctx->group_raw || !ctx->group_features || !ctx->group_recon) {
    grad__free(ctx->group_input), grad__free(ctx->group_raw);
    grad__free(ctx->group_features), grad__free(ctx->group_recon);
    ctx->group_input = ctx->group_raw = ctx->group_features = ctx->group_recon = NULL;
    return grad__fail(GRAD_E_NOMEM, "out of memory for batches of %d images", GRAD__SCORE_GROUP);
  }
  return GRAD_OK;
}

/* A group's per-image steps, each image on a part of the pool. */
typedef struct group_job {
  const grad_model *model;
  grad_context *ctx;
  const grad_image *const *images;
  grad_result **results;
  size_t first; /* of the batch call's images */
} group_job;

/* The image's result (its buffers at the image's size) and its tensor. */
static grad_status image_in(void *data, int i, int part) {
  const group_job *j = data;
  (void)part;
  const int size = grad_model_input_size(j->model);
  grad_status s = result_create(j->model, j->images[i], &j->results[i]);
  if (s == GRAD_OK)
    s = grad_image_to_tensor(j->images[i], size,
                             j->ctx->group_input + (size_t)i * 3 * size * size);
  return s == GRAD_OK ? s
                      : grad__fail_context(s, "grad_model_score_batch, image %zu: ", j->first + i);
}

/* The head on the reconstruction, then the map, mask and decision. */
static grad_status image_out(void *data, int i, int part) {
  const group_job *j = data;
  const grad_model *model = j->model;
  const int h = grad_store_height(model->store), w = grad_store_width(model->store);
  const size_t reduced = (size_t)model->reduce->channels * h * w;
  float score = 0;
  grad_status s = grad_head_map(model->head, j->ctx->part_ws[part],
                                j->ctx->group_recon + i * reduced,
                                j->ctx->group_features + i * reduced, model->reduce->channels, h,
                                w, j->results[i]->model_map, &score);
  if (s == GRAD_OK) s = result_finish(model, j->results[i], score);
  return s == GRAD_OK ? s
                      : grad__fail_context(s, "grad_model_score_batch, image %zu: ", j->first + i);
}

static grad_status ensure_part_workspaces(grad_context *ctx, int parts) {
  grad_status s = GRAD_OK;
  for (int p = 0; s == GRAD_OK && p < parts; p++)
    if (!ctx->part_ws[p]) s = grad_workspace_create(&ctx->part_ws[p]);
  return s;
}

/* n <= GRAD__SCORE_GROUP images through backbone, reduction and store as
 * one batch; the steps per image (to a tensor, the head) on the threads
 * side by side, which are otherwise a fifth of the time on 2 threads
 * (docs/results.md). */
static grad_status score_group(const grad_model *model, grad_context *ctx,
                               const grad_image *const *images, size_t first, int n,
                               grad_result **results) {
  const grad__pca *pca = model->reduce;
  const size_t hw = (size_t)grad_store_height(model->store) * grad_store_width(model->store);
  int parts = grad__threads(ctx->ws);
  if (parts > n) parts = n;
  group_job job = {model, ctx, images, results, first};
  grad_status s = ensure_part_workspaces(ctx, parts);
  if (s == GRAD_OK) s = grad__parallel_items(n, parts, image_in, &job);
  if (s != GRAD_OK) return s;
  grad__ws_reset(ctx->ws);
  s = grad_backbone_features(model->backbone, ctx->ws, ctx->group_input, n, ctx->group_raw);
  if (s == GRAD_OK) s = grad__pca_apply(pca, ctx->group_raw, n, hw, ctx->group_features, ctx->ws);
  if (s == GRAD_OK)
    s = grad__store_reconstruct(model->store, ctx->ws, ctx->group_features, n, ctx->group_recon);
  if (s == GRAD_OK) return grad__parallel_items(n, parts, image_out, &job);
  return grad__fail_context(s, "grad_model_score_batch, images %zu..%zu: ", first, first + n - 1);
}

grad_status grad_model_score_batch(const grad_model *model, grad_context *ctx,
                                   const grad_image *const *images, size_t count,
                                   grad_result **results) {
  if (!results) return grad__fail(GRAD_E_INVALID_ARG, "grad_model_score_batch: results is NULL");
  for (size_t i = 0; i < count; i++) results[i] = NULL;
  grad_status s = check_score_args(model, ctx, "grad_model_score_batch");
  if (s == GRAD_OK && count && !images)
    s = grad__fail(GRAD_E_INVALID_ARG, "grad_model_score_batch: images is NULL");
  for (size_t i = 0; s == GRAD_OK && i < count; i++)
    if (!images[i]) s = grad__fail(GRAD_E_INVALID_ARG, "grad_model_score_batch: image %zu is NULL", i);
  if (s == GRAD_OK && count) s = ensure_group_buffers(model, ctx);
  for (size_t first = 0; s == GRAD_OK && first < count; first += GRAD__SCORE_GROUP) {
    int n = (int)(count - first < GRAD__SCORE_GROUP ? count - first : GRAD__SCORE_GROUP);
    s = score_group(model, ctx, images + first, first, n, results + first);
  }
  if (s != GRAD_OK) {
    for (size_t i = 0; i < count; i++) {
      grad_result_free(results[i]);
      results[i] = NULL;
    }
  }
  return s;
}

double grad_result_score(const grad_result *r) { return r ? r->score : NAN; }
double grad_result_normalized_score(const grad_result *r) { return r ? r->normalized : NAN; }
int grad_result_is_anomalous(const grad_result *r) { return r ? r->anomalous : 0; }
int grad_result_width(const grad_result *r) { return r ? r->width : 0; }
int grad_result_height(const grad_result *r) { return r ? r->height : 0; }
const float *grad_result_map(const grad_result *r) { return r ? r->map : NULL; }
const uint8_t *grad_result_mask(const grad_result *r) { return r ? r->mask : NULL; }
