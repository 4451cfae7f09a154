/*
 * The model a user touches: train a tiny model on synthetic data, then save
 * and load it, score from several threads, evaluate, and refuse bad files.
 */
#define GRAD_EXPERIMENTAL /* uses grad_synth_* (not yet promised) */
#include <grad/grad.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dataset.h"
#include "model_internal.h"
#include "safetensors.h"
#include "testutil.h"

static char root[256], data[512], model_path[512];
static char test_paths[8][700]; /* filled before the tests fork, read-only after */

/* Runs once in the parent process before the forked tests: a tiny model. */
static void train_tiny_model(void) {
  snprintf(root, sizeof root, "%s", test_tmpdir());
  snprintf(data, sizeof data, "%s/data", root);
  snprintf(model_path, sizeof model_path, "%s/tiny.grad", root);
  grad_synth_options so;
  grad_synth_options_init(&so, sizeof so);
  so.out_dir = data;
  so.size = 64;
  so.train_count = 12;
  so.test_count = 8;
  so.category = "weave";
  ck_assert_int_eq(grad_synth_write(&so), GRAD_OK);

  grad_backbone_options bo;
  grad_backbone_options_init(&bo, sizeof bo);
  grad_model_options mo;
  grad_model_options_init(&mo, sizeof mo);
  mo.backbone = &bo;
  bo.input_size = 64;
  mo.channels = 16;
  mo.blocks = 1;
  bo.random_seed = 3;
  mo.holdout_fraction = 0.2;
  grad_train_options to;
  grad_train_options_init(&to, sizeof to);
  to.epochs = 2;
  to.batch = 4;
  char category[600];
  snprintf(category, sizeof category, "%s/weave", data);
  const char *folders[] = {category};
  grad_model *model = NULL;
  ck_assert_int_eq(grad_model_train(&mo, &to, folders, 1, &model), GRAD_OK);
  ck_assert_int_eq(grad_model_save(model, model_path), GRAD_OK);
  grad_model_free(model);

  grad__test_set set;
  ck_assert_int_eq(grad__category_test_set(category, &set), GRAD_OK);
  ck_assert_uint_eq(set.count, 8);
  for (int i = 0; i < 8; i++) snprintf(test_paths[i], sizeof test_paths[i], "%s", set.items[i].image);
  grad__test_set_free(&set);
}

/* The i-th of the 8 test images of the synthetic class. */
static const char *test_image(int i) { return test_paths[i]; }

static double score_of(const grad_model *model, const char *path, float *map_sum) {
  grad_context *ctx = NULL;
  grad_image *image = NULL;
  grad_result *result = NULL;
  ck_assert_int_eq(grad_context_create(model, &ctx), GRAD_OK);
  ck_assert_int_eq(grad_image_load(path, &image), GRAD_OK);
  ck_assert_int_eq(grad_model_score(model, ctx, image, &result), GRAD_OK);
  double score = grad_result_score(result);
  if (map_sum) {
    double sum = 0;
    for (int i = 0; i < grad_result_width(result) * grad_result_height(result); i++)
      sum += grad_result_map(result)[i];
    *map_sum = (float)sum;
  }
  grad_result_free(result);
  grad_image_free(image);
  grad_context_free(ctx);
  return score;
}

START_TEST(saved_model_scores_like_the_trained_one) {
  grad_model *a = NULL, *b = NULL;
  ck_assert_int_eq(grad_model_load(model_path, &a), GRAD_OK);
  char copy[600];
  snprintf(copy, sizeof copy, "%s/copy.grad", root);
  ck_assert_int_eq(grad_model_save(a, copy), GRAD_OK); /* load -> save -> load is lossless */
  ck_assert_int_eq(grad_model_load(copy, &b), GRAD_OK);
  ck_assert_int_eq(grad_model_input_size(a), 64);
  ck_assert(isfinite(grad_model_image_threshold(a)));
  for (int i = 0; i < 2; i++) {
    float sum_a, sum_b;
    double sa = score_of(a, test_image(i), &sum_a), sb = score_of(b, test_image(i), &sum_b);
    ck_assert(isfinite(sa) && sa > 0);
    ck_assert_double_eq(sa, sb);
    ck_assert_float_eq(sum_a, sum_b);
  }
  grad_model_free(a);
  grad_model_free(b);
}
END_TEST

START_TEST(memory_is_known_before_it_is_allocated) {
  size_t file_bytes = 0;
  ck_assert_int_eq(grad_model_file_bytes(model_path, &file_bytes), GRAD_OK);
  grad_model *model = NULL;
  ck_assert_int_eq(grad_model_load(model_path, &model), GRAD_OK);
  ck_assert_uint_eq(grad_model_bytes(model), file_bytes);
  /* The engines' copies of the weights: laid out at load where oneDNN runs
   * them (the backbone's convolutions at least once), none otherwise. */
  if (grad_backbone_engine(grad_model_backbone(model)) == GRAD_ENGINE_ONEDNN)
    ck_assert_uint_ge(grad_model_engine_bytes(model), grad_model_bytes(model) / 2);
  else
    ck_assert_uint_eq(grad_model_engine_bytes(model), 0);
  size_t context_bytes = grad_context_bytes(model);
  /* At least the input, backbone, reduced and reconstructed maps. */
  ck_assert_uint_gt(context_bytes, (3 * 64 * 64 + 3 * 16 * 8 * 8) * sizeof(float));
  grad_context *ctx = NULL;
  ck_assert_int_eq(grad_context_create(model, &ctx), GRAD_OK);
  size_t reserved = grad_workspace_bytes(ctx->ws);
  ck_assert_uint_le(reserved, context_bytes);
  float map[64 * 64], score;
  /* A blank input: the context's buffer is uninitialised (MALLOC_PERTURB_
   * may fill it with values whose features overflow). */
  memset(ctx->input, 0, 3 * 64 * 64 * sizeof(float));
  for (int round = 0; round < 2; round++) {
    ck_assert_int_eq(grad__model_score_tensor(model, ctx, ctx->input, map, &score), GRAD_OK);
    ck_assert_uint_eq(grad_workspace_bytes(ctx->ws), reserved); /* nothing grew */
  }
  grad_context_free(ctx);
  grad_model_free(model);
  ck_assert_int_eq(grad_model_file_bytes("/nonexistent.grad", &file_bytes), GRAD_E_IO);
}
END_TEST

START_TEST(result_has_map_mask_and_decision) {
  grad_model *model = NULL;
  grad_context *ctx = NULL;
  grad_image *image = NULL;
  grad_result *result = NULL;
  ck_assert_int_eq(grad_model_load(model_path, &model), GRAD_OK);
  ck_assert_int_eq(grad_context_create(model, &ctx), GRAD_OK);
  ck_assert_int_eq(grad_image_load(test_image(0), &image), GRAD_OK);
  ck_assert_int_eq(grad_model_score(model, ctx, image, &result), GRAD_OK);
  ck_assert_int_eq(grad_result_width(result), 64);
  ck_assert_int_eq(grad_result_height(result), 64);
  double n = grad_result_normalized_score(result);
  ck_assert(n >= 0 && n <= 1);
  ck_assert_int_eq(grad_result_is_anomalous(result), grad_result_score(result) >=
                                                         grad_model_image_threshold(model));
  ck_assert_int_eq(n >= 0.5, grad_result_is_anomalous(result));
  const uint8_t *mask = grad_result_mask(result);
  ck_assert_ptr_nonnull(mask);
  for (int i = 0; i < 64 * 64; i++) ck_assert(mask[i] == 0 || mask[i] == 255);
  grad_image *overlay = NULL;
  ck_assert_int_eq(grad_overlay_render(model, image, result, &overlay), GRAD_OK);
  ck_assert_int_eq(grad_image_channels(overlay), 3);
  grad_image_free(overlay);
  grad_result_free(result);
  grad_image_free(image);
  grad_context_free(ctx);
  grad_model_free(model);
}
END_TEST

typedef struct worker {
  const grad_model *model;
  double scores[8];
  grad_status status;
} worker;

static void *score_all(void *arg) {
  worker *w = arg;
  grad_context *ctx = NULL;
  w->status = grad_context_create(w->model, &ctx);
  for (int round = 0; round < 3 && w->status == GRAD_OK; round++) {
    for (int i = 0; i < 8 && w->status == GRAD_OK; i++) {
      grad_image *image = NULL;
      grad_result *result = NULL;
      w->status = grad_image_load(test_image(i), &image);
      if (w->status == GRAD_OK) w->status = grad_model_score(w->model, ctx, image, &result);
      if (w->status == GRAD_OK) w->scores[i] = grad_result_score(result);
      grad_result_free(result);
      grad_image_free(image);
    }
  }
  grad_context_free(ctx);
  return NULL;
}

START_TEST(threads_share_one_model) {
  grad_model *model = NULL;
  ck_assert_int_eq(grad_model_load(model_path, &model), GRAD_OK);
  worker single = {.model = model};
  score_all(&single);
  ck_assert_int_eq(single.status, GRAD_OK);
  enum { THREADS = 4 };
  worker workers[THREADS];
  pthread_t threads[THREADS];
  for (int t = 0; t < THREADS; t++) {
    workers[t] = (worker){.model = model};
    ck_assert_int_eq(pthread_create(&threads[t], NULL, score_all, &workers[t]), 0);
  }
  for (int t = 0; t < THREADS; t++) {
    pthread_join(threads[t], NULL);
    ck_assert_int_eq(workers[t].status, GRAD_OK);
    for (int i = 0; i < 8; i++) ck_assert_double_eq(workers[t].scores[i], single.scores[i]);
  }
  grad_model_free(model);
}
END_TEST

START_TEST(evaluation_reports_metrics) {
  grad_model *model = NULL;
  grad_context *ctx = NULL;
  ck_assert_int_eq(grad_model_load(model_path, &model), GRAD_OK);
  ck_assert_int_eq(grad_context_create(model, &ctx), GRAD_OK);
  char category[600];
  snprintf(category, sizeof category, "%s/weave", data);
  grad_eval_summary summary;
  grad_eval_summary_init(&summary, sizeof summary);
  ck_assert_int_eq(grad_model_evaluate(model, ctx, category, NULL, NULL, &summary), GRAD_OK);
  ck_assert_int_eq(summary.images, 8);
  ck_assert_int_eq(summary.anomalous_images, 6); /* a quarter good, rounded up */
  double metrics[] = {summary.image_auroc, summary.pixel_auroc, summary.aupro,
                      summary.image_f1_max, summary.pixel_f1_max};
  for (int i = 0; i < 5; i++) ck_assert(metrics[i] >= 0 && metrics[i] <= 1);
  grad_context_free(ctx);
  grad_model_free(model);
}
END_TEST

/* Scoring memory grows with the image (a float map and a mask at its size):
 * an image over the max_pixels budget is refused before any of it. */
START_TEST(scoring_refuses_images_over_the_pixel_budget) {
  grad_model *model = NULL;
  grad_context *ctx = NULL;
  grad_image *image = NULL;
  ck_assert_int_eq(grad_model_load(model_path, &model), GRAD_OK);
  ck_assert_int_eq(grad_context_create(model, &ctx), GRAD_OK);
  ck_assert_int_eq(grad_image_load(test_image(0), &image), GRAD_OK);
  grad_image_limits limits;
  grad_image_limits_init(&limits);
  limits.max_pixels = (uint64_t)grad_image_width(image) * grad_image_height(image) - 1;
  ck_assert_int_eq(grad_image_limits_set(&limits), GRAD_OK);
  grad_result *result = (grad_result *)1;
  grad__alloc_fail_after(0); /* refused before allocating */
  grad_status s = grad_model_score(model, ctx, image, &result);
  grad__alloc_fail_after(-1);
  ck_assert_int_eq(s, GRAD_E_TOO_LARGE);
  ck_assert_ptr_null(result);
  ck_assert_ptr_nonnull(strstr(grad_last_error(), "max_pixels"));
  ck_assert_int_eq(grad_image_limits_set(NULL), GRAD_OK);
  ck_assert_int_eq(grad_model_score(model, ctx, image, &result), GRAD_OK);
  grad_result_free(result);
  grad_image_free(image);
  grad_context_free(ctx);
  grad_model_free(model);
}
END_TEST

/* A ground-truth mask whose size differs from its image's is refused, with
 * both sizes and the mask named (resizing it would misplace the defect). */
START_TEST(evaluation_refuses_a_mask_of_another_size) {
  char dir[600], category[700];
  snprintf(dir, sizeof dir, "%s/masks", root);
  grad_synth_options so;
  grad_synth_options_init(&so, sizeof so);
  so.out_dir = dir;
  so.size = 64;
  so.train_count = 1;
  so.test_count = 4;
  so.category = "weave";
  ck_assert_int_eq(grad_synth_write(&so), GRAD_OK);
  snprintf(category, sizeof category, "%s/weave", dir);
  grad__test_set set;
  ck_assert_int_eq(grad__category_test_set(category, &set), GRAD_OK);
  char mask[700] = "";
  for (size_t i = 0; i < set.count && !mask[0]; i++)
    if (set.items[i].mask) snprintf(mask, sizeof mask, "%s", set.items[i].mask);
  grad__test_set_free(&set);
  ck_assert(mask[0]);
  uint8_t px[32 * 48] = {0};
  ck_assert_int_eq(grad_png_write(mask, px, 48, 32, 1, 48), GRAD_OK);

  grad_model *model = NULL;
  grad_context *ctx = NULL;
  ck_assert_int_eq(grad_model_load(model_path, &model), GRAD_OK);
  ck_assert_int_eq(grad_context_create(model, &ctx), GRAD_OK);
  grad_eval_summary summary = {.struct_size = sizeof summary};
  ck_assert_int_eq(grad_model_evaluate(model, ctx, category, NULL, NULL, &summary), GRAD_E_SHAPE);
  ck_assert_ptr_nonnull(strstr(grad_last_error(), mask));
  ck_assert_ptr_nonnull(strstr(grad_last_error(), "48 x 32"));
  grad_context_free(ctx);
  grad_model_free(model);
}
END_TEST

/* Copies the model file with one change: a metadata value replaced (or
 * removed: value NULL), or a tensor dropped (name NULL: none). The data
 * checksum is made anew, unless it is the value being changed. */
static void rewrite_model(const char *out, const char *meta_key, const char *meta_value,
                          const char *drop_tensor) {
  grad__st_file *f = NULL;
  grad__st_writer *w = NULL;
  ck_assert_int_eq(grad__st_open(model_path, &f), GRAD_OK);
  ck_assert_int_eq(grad__st_writer_create(&w), GRAD_OK);
  for (size_t i = 0; i < grad__st_meta_count(f); i++) {
    const char *key, *value;
    grad__st_meta_at(f, i, &key, &value);
    if (meta_key && !strcmp(key, meta_key)) value = meta_value;
    if (value) ck_assert_int_eq(grad__st_writer_meta(w, key, value), GRAD_OK);
  }
  for (size_t i = 0; i < grad__st_count(f); i++) {
    const grad__st_tensor *t = grad__st_at(f, i);
    if (drop_tensor && !strcmp(t->name, drop_tensor)) continue;
    float *values = malloc(t->count * sizeof(float) + 1);
    ck_assert_int_eq(grad__st_read_f32(f, t->name, 0, NULL, false, values), GRAD_OK);
    ck_assert_int_eq(grad__st_writer_add(w, t->name, t->ndim, t->shape, values), GRAD_OK);
    free(values);
  }
  char crc[16];
  snprintf(crc, sizeof crc, "%08x", (unsigned)grad__st_writer_data_crc32(w));
  if (grad__st_meta(f, "data_crc32") && !(meta_key && !strcmp(meta_key, "data_crc32")))
    ck_assert_int_eq(grad__st_writer_meta(w, "data_crc32", crc), GRAD_OK);
  ck_assert_int_eq(grad__st_writer_save(w, out), GRAD_OK);
  grad__st_writer_free(w);
  grad__st_close(f);
}

START_TEST(bad_model_files_are_refused) {
  char path[600];
  grad_model *model = (grad_model *)0x1;
  snprintf(path, sizeof path, "%s/newer.grad", root);
  rewrite_model(path, "format_version", "99", NULL);
  ck_assert_int_eq(grad_model_load(path, &model), GRAD_E_VERSION);
  ck_assert_ptr_null(model);
  ck_assert_ptr_nonnull(strstr(grad_last_error(), "99"));

  snprintf(path, sizeof path, "%s/other.grad", root);
  rewrite_model(path, "format", "something-else", NULL);
  ck_assert_int_eq(grad_model_load(path, &model), GRAD_E_FORMAT);

  snprintf(path, sizeof path, "%s/missing.grad", root);
  rewrite_model(path, NULL, NULL, "store.local_grid");
  ck_assert_int_eq(grad_model_load(path, &model), GRAD_E_MISSING);
  ck_assert_ptr_nonnull(strstr(grad_last_error(), "store.local_grid"));

  /* A truncated file: every prefix is refused, none crashes. */
  FILE *f = fopen(model_path, "rb");
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  rewind(f);
  unsigned char *bytes = malloc(size);
  ck_assert_int_eq(fread(bytes, 1, size, f), size);
  fclose(f);
  snprintf(path, sizeof path, "%s/truncated.grad", root);
  for (long cut = 0; cut < size; cut += size / 13 + 1) {
    FILE *t = fopen(path, "wb");
    fwrite(bytes, 1, cut, t);
    fclose(t);
    grad_status s = grad_model_load(path, &model);
    ck_assert_msg(s == GRAD_E_FORMAT, "cut at %ld: %s", cut, grad_status_name(s));
    ck_assert_ptr_null(model);
  }
  free(bytes);
  ck_assert_int_eq(grad_model_load("/nonexistent/model.grad", &model), GRAD_E_IO);
}
END_TEST

/* CRC-32 (IEEE, reflected, as zlib and Python's zlib.crc32), bit by bit: an
 * implementation independent of the library's. */
static uint32_t crc32_bitwise(const unsigned char *p, size_t n) {
  uint32_t crc = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; i++) {
    crc ^= p[i];
    for (int b = 0; b < 8; b++) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  return ~crc;
}

static unsigned char *read_whole(const char *path, size_t *size) {
  FILE *f = fopen(path, "rb");
  ck_assert_ptr_nonnull(f);
  fseek(f, 0, SEEK_END);
  *size = (size_t)ftell(f);
  rewind(f);
  unsigned char *bytes = malloc(*size);
  ck_assert_uint_eq(fread(bytes, 1, *size, f), *size);
  fclose(f);
  return bytes;
}

static void write_whole(const char *path, const unsigned char *bytes, size_t size) {
  FILE *f = fopen(path, "wb");
  ck_assert_ptr_nonnull(f);
  ck_assert_uint_eq(fwrite(bytes, 1, size, f), size);
  ck_assert_int_eq(fclose(f), 0);
}

/* The checksum is the CRC-32 of every byte after the header; a flipped
 * exponent bit in one weight (finite, but ~1e37 times larger) is caught,
 * with the file named. A version-1 file (no checksum) still loads. */
START_TEST(corrupt_weights_fail_the_checksum) {
  size_t size;
  unsigned char *bytes = read_whole(model_path, &size);
  uint64_t header = 0;
  for (int i = 0; i < 8; i++) header |= (uint64_t)bytes[i] << (8 * i);
  grad__st_file *f = NULL;
  ck_assert_int_eq(grad__st_open(model_path, &f), GRAD_OK);
  ck_assert_str_eq(grad__st_meta(f, "format_version"), "2");
  char expected[16];
  snprintf(expected, sizeof expected, "%08x", (unsigned)crc32_bitwise(bytes + 8 + header,
                                                                      size - 8 - header));
  ck_assert_str_eq(grad__st_meta(f, "data_crc32"), expected);
  const grad__st_tensor *t = grad__st_find(f, "backbone.conv1.weight");
  ck_assert_ptr_nonnull(t);
  size_t at = t->offset + 4 * 7 + 3; /* the sign/exponent byte of weight 7 */
  grad__st_close(f);

  char path[600];
  snprintf(path, sizeof path, "%s/flipped.grad", root);
  bytes[at] ^= 0x40; /* the exponent's top bit: |w| < 1 becomes ~1e38 |w| */
  write_whole(path, bytes, size);
  grad_model *model = (grad_model *)0x1;
  ck_assert_int_eq(grad_model_load(path, &model), GRAD_E_FORMAT);
  ck_assert_ptr_null(model);
  ck_assert_ptr_nonnull(strstr(grad_last_error(), path));
  ck_assert_ptr_nonnull(strstr(grad_last_error(), "corrupt"));
  free(bytes);

  /* The same model as a version-1 file loads and scores as before. */
  snprintf(path, sizeof path, "%s/version1.grad", root);
  rewrite_model(path, "format_version", "1", NULL);
  char v1[600];
  snprintf(v1, sizeof v1, "%s", path);
  snprintf(path, sizeof path, "%s/version1b.grad", root);
  ck_assert_int_eq(grad__st_open(v1, &f), GRAD_OK);
  grad__st_close(f);
  ck_assert_int_eq(grad_model_load(v1, &model), GRAD_OK);
  grad_model *original = NULL;
  ck_assert_int_eq(grad_model_load(model_path, &original), GRAD_OK);
  ck_assert_double_eq(score_of(model, test_image(0), NULL), score_of(original, test_image(0), NULL));
  grad_model_free(model);
  grad_model_free(original);
}
END_TEST

/* Metadata that contradicts the tensors or itself is a load error naming
 * the file and the key. */
START_TEST(metadata_that_lies_is_refused) {
  static const struct {
    const char *key, *value;
    grad_status status;
    const char *named; /* the key the message names, when not key */
  } lies[] = {
    {"backbone.arch", "resnet34", GRAD_E_FORMAT, NULL},       /* resnet18's blocks */
    {"backbone.arch", "wide_resnet50_2", GRAD_E_FORMAT, NULL},
    {"head.image_rule", NULL, GRAD_E_MISSING, NULL},
    {"head.image_rule", "median", GRAD_E_FORMAT, NULL},
    {"head.image_rule", "none", GRAD_E_FORMAT, NULL},          /* every image "good" */
    {"head.image_threshold", "-1e30", GRAD_E_FORMAT, NULL},    /* below the calibrated range */
    {"head.pixel_rule", "quantile", GRAD_E_FORMAT, "head.pixel_threshold"}, /* above hi */
    {"data_crc32", NULL, GRAD_E_MISSING, NULL},
    {"data_crc32", "0000000g", GRAD_E_FORMAT, NULL},
  };
  char path[600];
  snprintf(path, sizeof path, "%s/lie.grad", root);
  for (size_t i = 0; i < sizeof lies / sizeof lies[0]; i++) {
    rewrite_model(path, lies[i].key, lies[i].value, NULL);
    grad_model *model = (grad_model *)0x1;
    grad_status s = grad_model_load(path, &model);
    ck_assert_msg(s == lies[i].status, "%s = %s: %s (%s)", lies[i].key,
                  lies[i].value ? lies[i].value : "(removed)", grad_status_name(s),
                  grad_last_error());
    ck_assert_ptr_null(model);
    const char *named = lies[i].named ? lies[i].named : lies[i].key;
    ck_assert_msg(strstr(grad_last_error(), path) && strstr(grad_last_error(), named),
                  "\"%s\" names the file and the key %s", grad_last_error(), named);
  }
}
END_TEST

START_TEST(save_failure_leaves_nothing_behind) {
  grad_model *model = NULL;
  ck_assert_int_eq(grad_model_load(model_path, &model), GRAD_OK);
  ck_assert_int_eq(grad_model_save(model, "/nonexistent/dir/model.grad"), GRAD_E_IO);
  ck_assert_ptr_nonnull(strstr(grad_last_error(), "/nonexistent/dir/model.grad"));
  /* Saving over an existing file replaces it whole. */
  char path[600];
  snprintf(path, sizeof path, "%s/over.grad", root);
  FILE *f = fopen(path, "w");
  fputs("old contents", f);
  fclose(f);
  ck_assert_int_eq(grad_model_save(model, path), GRAD_OK);
  grad_model *again = NULL;
  ck_assert_int_eq(grad_model_load(path, &again), GRAD_OK);
  grad_model_free(again);
  grad_model_free(model);
}
END_TEST

START_TEST(training_input_errors_are_reported) {
  grad_model *model = NULL;
  const char *none[] = {"/nonexistent/images"};
  ck_assert_int_eq(grad_model_train(NULL, NULL, none, 1, &model), GRAD_E_IO);
  ck_assert_ptr_nonnull(strstr(grad_last_error(), "/nonexistent/images"));
  const char *empty[] = {test_tmpdir()};
  ck_assert_int_eq(grad_model_train(NULL, NULL, empty, 1, &model), GRAD_E_MISSING);
  grad_backbone_options bo;
  grad_backbone_options_init(&bo, sizeof bo);
  grad_model_options mo;
  grad_model_options_init(&mo, sizeof mo);
  mo.backbone = &bo;
  bo.arch = "resnet7";
  char category[600];
  snprintf(category, sizeof category, "%s/weave", data);
  const char *folders[] = {category};
  ck_assert_int_ne(grad_model_train(&mo, NULL, folders, 1, &model), GRAD_OK);
  ck_assert_ptr_nonnull(strstr(grad_last_error(), "resnet7"));
  ck_assert_ptr_null(model);
}
END_TEST

START_TEST(batch_scores_equal_single_calls) {
  /* 11 images: a full group of 8, then a partial one of 3. */
  enum { N = 11 };
  grad_model *model = NULL;
  grad_context *ctx = NULL;
  ck_assert_int_eq(grad_model_load(model_path, &model), GRAD_OK);
  ck_assert_int_eq(grad_context_create(model, &ctx), GRAD_OK);
  grad_image *images[N];
  grad_result *batch[N], *single[N];
  for (int i = 0; i < N; i++) ck_assert_int_eq(grad_image_load(test_image(i % 8), &images[i]), GRAD_OK);
  for (int i = 0; i < N; i++)
    ck_assert_int_eq(grad_model_score(model, ctx, images[i], &single[i]), GRAD_OK);
  ck_assert_int_eq(grad_model_score_batch(model, ctx, (const grad_image *const *)images, N, batch),
                   GRAD_OK);
  double threshold = grad_model_image_threshold(model);
  for (int i = 0; i < N; i++) {
    double a = grad_result_score(batch[i]), b = grad_result_score(single[i]);
    ck_assert_msg(fabs(a - b) <= 1e-5 * fabs(b), "image %d: batch %.9g, single %.9g", i, a, b);
    if (fabs(b - threshold) > 1e-4 * fabs(threshold))
      ck_assert_int_eq(grad_result_is_anomalous(batch[i]), grad_result_is_anomalous(single[i]));
    int pixels = grad_result_width(single[i]) * grad_result_height(single[i]);
    ck_assert_int_eq(grad_result_width(batch[i]), grad_result_width(single[i]));
    ck_assert_close_rel(grad_result_map(batch[i]), grad_result_map(single[i]), (size_t)pixels, 1e-5);
    ck_assert_ptr_nonnull(grad_result_mask(batch[i]));
  }
  /* Images repeated within the call score the same. */
  ck_assert_double_eq(grad_result_score(batch[0]), grad_result_score(batch[8]));
  for (int i = 0; i < N; i++) grad_result_free(batch[i]), grad_result_free(single[i]);

  /* A NULL image is refused by index; nothing is returned. */
  const grad_image *with_null[3] = {images[0], NULL, images[1]};
  grad_result *out[3];
  ck_assert_int_eq(grad_model_score_batch(model, ctx, with_null, 3, out), GRAD_E_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(grad_last_error(), "image 1"));
  for (int i = 0; i < 3; i++) ck_assert_ptr_null(out[i]);
  ck_assert_int_eq(grad_model_score_batch(model, ctx, with_null, 0, out), GRAD_OK);

  /* A failure in the per-image steps, which run on the pool (image 9, in
   * the second group, over the pixel limit): its status and index reach
   * the caller, and nothing is returned. */
  grad_image *big = NULL;
  const int w9 = 2 * grad_image_width(images[9]), h9 = 2 * grad_image_height(images[9]);
  ck_assert_int_eq(grad_image_resize(images[9], w9, h9, GRAD_RESIZE_NEAREST, &big), GRAD_OK);
  grad_image_free(images[9]);
  images[9] = big;
  grad_image_limits saved, small;
  grad_image_limits_get(&saved);
  small = saved;
  small.max_pixels = (uint64_t)w9 * h9 - 1;
  for (int i = 0; i < N; i++)
    if (i != 9)
      ck_assert_uint_le((uint64_t)grad_image_width(images[i]) * grad_image_height(images[i]),
                        small.max_pixels);
  ck_assert_int_eq(grad_image_limits_set(&small), GRAD_OK);
  ck_assert_int_eq(grad_model_score_batch(model, ctx, (const grad_image *const *)images, N, batch),
                   GRAD_E_TOO_LARGE);
  ck_assert_msg(strstr(grad_last_error(), "image 9") != NULL, "%s", grad_last_error());
  for (int i = 0; i < N; i++) ck_assert_ptr_null(batch[i]);
  ck_assert_int_eq(grad_image_limits_set(&saved), GRAD_OK);
  for (int i = 0; i < N; i++) grad_image_free(images[i]);
  grad_context_free(ctx);
  grad_model_free(model);
}
END_TEST

int main(void) {
  Suite *s = suite_create("model");
  TCase *tc = tcase_create("model");
  tcase_add_unchecked_fixture(tc, train_tiny_model, NULL);
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, saved_model_scores_like_the_trained_one);
  tcase_add_test(tc, result_has_map_mask_and_decision);
  tcase_add_test(tc, memory_is_known_before_it_is_allocated);
  tcase_add_test(tc, threads_share_one_model);
  tcase_add_test(tc, batch_scores_equal_single_calls);
  tcase_add_test(tc, evaluation_reports_metrics);
  tcase_add_test(tc, evaluation_refuses_a_mask_of_another_size);
  tcase_add_test(tc, scoring_refuses_images_over_the_pixel_budget);
  tcase_add_test(tc, bad_model_files_are_refused);
  tcase_add_test(tc, corrupt_weights_fail_the_checksum);
  tcase_add_test(tc, metadata_that_lies_is_refused);
  tcase_add_test(tc, save_failure_leaves_nothing_behind);
  tcase_add_test(tc, training_input_errors_are_reported);
  suite_add_tcase(s, tc);
  return test_run_suite(s);
}
