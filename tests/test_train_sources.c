/*
 * Training from folders, from a list of files and from images in memory
 * gives the same model; a cancelled training still gives a usable model
 * with the last completed step; every model records its provenance.
 */
#define GRAD_EXPERIMENTAL /* uses grad_synth_* (not yet promised) */
#include <grad/grad.h>
#include <math.h>
#include <jansson.h>

#include "dataset.h"
#include "testutil.h"

static char root[256], category[600];
static char train_files[12][700]; /* CATEGORY/train/good, sorted; filled before the forks */
static size_t train_count;

static void make_data(void) {
  snprintf(root, sizeof root, "%s", test_tmpdir());
  char data[512];
  snprintf(data, sizeof data, "%s/data", root);
  grad_synth_options so;
  grad_synth_options_init(&so, sizeof so);
  so.out_dir = data;
  so.size = 64;
  so.train_count = 12;
  so.test_count = 4;
  so.category = "weave";
  if (grad_synth_write(&so) != GRAD_OK) {
    fprintf(stderr, "synthetic data: %s\n", grad_last_error());
    exit(EXIT_FAILURE);
  }
  snprintf(category, sizeof category, "%s/weave", data);
  grad__path_list list = {0};
  if (grad__training_images(category, &list) != GRAD_OK || list.count != 12) {
    fprintf(stderr, "training images: %s\n", grad_last_error());
    exit(EXIT_FAILURE);
  }
  for (size_t i = 0; i < list.count; i++)
    snprintf(train_files[i], sizeof train_files[i], "%s", list.paths[i]);
  train_count = list.count;
  grad__path_list_free(&list);
}

static grad_backbone_options tiny_backbone; /* what tiny_options' mo->backbone points to */

static void tiny_options(grad_model_options *mo, grad_train_options *to, int epochs) {
  grad_backbone_options_init(&tiny_backbone, sizeof tiny_backbone);
  tiny_backbone.input_size = 64;
  tiny_backbone.random_seed = 3;
  grad_model_options_init(mo, sizeof *mo);
  mo->backbone = &tiny_backbone;
  mo->channels = 16;
  mo->blocks = 1;
  mo->holdout_fraction = 0.2; /* 12 images: 10 trained on, 2 held out */
  grad_train_options_init(to, sizeof *to);
  to->epochs = epochs;
  to->batch = 4; /* 3 steps per epoch */
  to->seed = 5;
}

/* Score of one test image and the sum of its map. */
static double score_of(const grad_model *model, const char *path, double *map_sum) {
  grad_context *ctx = NULL;
  grad_image *image = NULL;
  grad_result *result = NULL;
  ck_assert_int_eq(grad_context_create(model, &ctx), GRAD_OK);
  ck_assert_int_eq(grad_image_load(path, &image), GRAD_OK);
  ck_assert_int_eq(grad_model_score(model, ctx, image, &result), GRAD_OK);
  double score = grad_result_score(result);
  *map_sum = 0;
  for (int i = 0; i < grad_result_width(result) * grad_result_height(result); i++)
    *map_sum += grad_result_map(result)[i];
  grad_result_free(result);
  grad_image_free(image);
  grad_context_free(ctx);
  return score;
}

/* Two models are the same when thresholds and a test image's score and map are equal. */
static void assert_same_model(const grad_model *a, const grad_model *b) {
  ck_assert_double_eq(grad_model_image_threshold(a), grad_model_image_threshold(b));
  char test[800];
  snprintf(test, sizeof test, "%s/test/good/000.png", category);
  double sum_a, sum_b;
  ck_assert_double_eq(score_of(a, test, &sum_a), score_of(b, test, &sum_b));
  ck_assert_double_eq(sum_a, sum_b);
}

START_TEST(files_and_memory_train_the_same_model_as_the_folder) {
  grad_model_options mo;
  grad_train_options to;
  tiny_options(&mo, &to, 1);
  const char *folders[] = {category};
  const char *paths[12];
  grad_image *images[12];
  for (size_t i = 0; i < train_count; i++) {
    paths[i] = train_files[i];
    ck_assert_int_eq(grad_image_load(paths[i], &images[i]), GRAD_OK);
  }
  grad_model *from_folder = NULL, *from_files = NULL, *from_memory = NULL;
  ck_assert_int_eq(grad_model_train(&mo, &to, folders, 1, &from_folder), GRAD_OK);
  ck_assert_int_eq(grad_model_train_files(&mo, &to, paths, train_count, &from_files), GRAD_OK);
  ck_assert_int_eq(grad_model_train_images(&mo, &to, (const grad_image *const *)images,
                                           train_count, &from_memory),
                   GRAD_OK);
  assert_same_model(from_folder, from_files);
  assert_same_model(from_folder, from_memory);
  ck_assert_str_eq(grad_model_provenance(from_folder, "source"), "folders");
  ck_assert_str_eq(grad_model_provenance(from_files, "source"), "files");
  ck_assert_str_eq(grad_model_provenance(from_memory, "source"), "memory");
  /* The files' folder (a category's train/good) is named by the category;
   * memory has none. */
  ck_assert_str_eq(grad_model_provenance(from_files, "folders"), "[\"weave\"]");
  ck_assert_str_eq(grad_model_provenance(from_memory, "folders"), "[]");
  ck_assert_str_eq(grad_model_provenance(from_memory, "images"), "10");
  ck_assert_str_eq(grad_model_provenance(from_memory, "holdout_images"), "2");
  for (size_t i = 0; i < train_count; i++) grad_image_free(images[i]);
  grad_model_free(from_folder);
  grad_model_free(from_files);
  grad_model_free(from_memory);
}
END_TEST

START_TEST(bad_sources_are_refused_by_name) {
  grad_model_options mo;
  grad_train_options to;
  tiny_options(&mo, &to, 1);
  grad_model *model = (grad_model *)1;
  const char *paths[] = {train_files[0], "/nonexistent/part.png", train_files[2],
                         train_files[3], train_files[4], train_files[5]};
  ck_assert_int_eq(grad_model_train_files(&mo, &to, paths, 6, &model), GRAD_E_IO);
  ck_assert_ptr_null(model);
  ck_assert_ptr_nonnull(strstr(grad_last_error(), "/nonexistent/part.png"));
  const char *with_null[] = {train_files[0], NULL};
  ck_assert_int_eq(grad_model_train_files(&mo, &to, with_null, 2, &model), GRAD_E_INVALID_ARG);
  ck_assert_int_eq(grad_model_train_files(&mo, &to, paths, 0, &model), GRAD_E_INVALID_ARG);
  const grad_image *no_images[] = {NULL};
  ck_assert_int_eq(grad_model_train_images(&mo, &to, no_images, 1, &model), GRAD_E_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(grad_last_error(), "image 0"));
  ck_assert_ptr_null(model);
}
END_TEST

/* Cancels when the step counter reaches stop_at (1-based over the run). */
typedef struct cancel_at {
  int64_t stop_at;
  int calls;
} cancel_at;

static int cancel_progress(const grad_train_progress *p, void *user) {
  cancel_at *c = user;
  if (p->phase != GRAD_TRAIN_PHASE_EPOCHS) return 0; /* steps only */
  c->calls++;
  return p->total_steps >= c->stop_at;
}

START_TEST(cancelled_at_an_epoch_end_equals_the_shorter_run) {
  /* Cancelled on the last step of epoch 1 of 3, the model must be the
   * one a 1-epoch run makes: same parameters, same calibration. */
  grad_model_options mo;
  grad_train_options to;
  tiny_options(&mo, &to, 3);
  cancel_at stop = {.stop_at = 3};
  to.progress = cancel_progress;
  to.progress_user = &stop;
  const char *folders[] = {category};
  grad_model *cancelled = NULL, *short_run = NULL;
  ck_assert_int_eq(grad_model_train(&mo, &to, folders, 1, &cancelled), GRAD_E_CANCELLED);
  ck_assert_ptr_nonnull(strstr(grad_last_error(), "cancelled"));
  ck_assert_int_eq(stop.calls, 3);
  ck_assert_ptr_nonnull(cancelled);
  ck_assert_str_eq(grad_model_provenance(cancelled, "status"), "cancelled");
  ck_assert_str_eq(grad_model_provenance(cancelled, "epochs"), "1");
  tiny_options(&mo, &to, 1);
  ck_assert_int_eq(grad_model_train(&mo, &to, folders, 1, &short_run), GRAD_OK);
  ck_assert_str_eq(grad_model_provenance(short_run, "status"), "complete");
  assert_same_model(cancelled, short_run);
  grad_model_free(cancelled);
  grad_model_free(short_run);
}
END_TEST

START_TEST(cancelled_mid_epoch_model_scores_and_saves) {
  grad_model_options mo;
  grad_train_options to;
  tiny_options(&mo, &to, 3);
  cancel_at stop = {.stop_at = 4}; /* the first step of epoch 2 */
  to.progress = cancel_progress;
  to.progress_user = &stop;
  const char *folders[] = {category};
  grad_model *model = NULL, *one_epoch = NULL, *loaded = NULL;
  ck_assert_int_eq(grad_model_train(&mo, &to, folders, 1, &model), GRAD_E_CANCELLED);
  ck_assert_ptr_nonnull(model);
  ck_assert_str_eq(grad_model_provenance(model, "epochs"), "1");
  ck_assert(isfinite(grad_model_image_threshold(model)));
  /* One step more than the 1-epoch model: the parameters moved on. */
  tiny_options(&mo, &to, 1);
  ck_assert_int_eq(grad_model_train(&mo, &to, folders, 1, &one_epoch), GRAD_OK);
  ck_assert(grad_model_image_threshold(model) != grad_model_image_threshold(one_epoch));
  char path[600];
  snprintf(path, sizeof path, "%s/cancelled.grad", root);
  ck_assert_int_eq(grad_model_save(model, path), GRAD_OK);
  ck_assert_int_eq(grad_model_load(path, &loaded), GRAD_OK);
  assert_same_model(model, loaded);
  ck_assert_str_eq(grad_model_provenance(loaded, "status"), "cancelled");
  grad_model_free(model);
  grad_model_free(one_epoch);
  grad_model_free(loaded);
}
END_TEST

/* Fine-tuning goes on from the saved store: its first step's loss is that
 * of a trained store, not of a fresh one. */
typedef struct first_loss {
  double loss;
  int seen;
} first_loss;

static int record_first_loss(const grad_train_progress *p, void *user) {
  first_loss *f = user;
  if (p->phase != GRAD_TRAIN_PHASE_EPOCHS) return 0;
  if (!f->seen++) f->loss = p->loss;
  return 0;
}

START_TEST(train_more_continues_the_saved_store) {
  grad_model_options mo;
  grad_train_options to;
  tiny_options(&mo, &to, 3);
  first_loss fresh = {0}, more = {0};
  to.progress = record_first_loss;
  to.progress_user = &fresh;
  const char *folders[] = {category};
  grad_model *model = NULL, *tuned = NULL;
  ck_assert_int_eq(grad_model_train(&mo, &to, folders, 1, &model), GRAD_OK);
  char path[700];
  snprintf(path, sizeof path, "%s/base.grad", root);
  ck_assert_int_eq(grad_model_save(model, path), GRAD_OK);
  to.epochs = 1;
  to.progress_user = &more;
  ck_assert_int_eq(grad_model_train_more(path, &to, folders, 1, &tuned), GRAD_OK);
  ck_assert_int_eq(more.seen, 3); /* 10 images, batch 4 */
  ck_assert_double_lt(more.loss, 0.5 * fresh.loss);
  ck_assert_str_eq(grad_model_provenance(tuned, "more_epochs"), "1");
  ck_assert_str_eq(grad_model_provenance(tuned, "more_status"), "complete");
  ck_assert_ptr_nonnull(strstr(grad_model_description(tuned), "then 1 more epochs on"));
  double sum;
  char test[800];
  snprintf(test, sizeof test, "%s/test/good/000.png", category);
  ck_assert(isfinite(score_of(tuned, test, &sum)));
  to.resume_path = path;
  grad_model *refused = (grad_model *)1;
  ck_assert_int_eq(grad_model_train_more(path, &to, folders, 1, &refused), GRAD_E_INVALID_ARG);
  ck_assert_ptr_null(refused);
  grad_model_free(model);
  grad_model_free(tuned);
}
END_TEST

/* Every phase of grad_model_train reports, in order, up to its total. */
typedef struct phase_log {
  int order[64], count;          /* phases in the order first seen */
  int64_t last_done[4], last_total[4];
  double last_elapsed;
  int elapsed_went_back, stop_in_phase;
} phase_log;

static int log_phase(const grad_train_progress *p, void *user) {
  phase_log *log = user;
  ck_assert_uint_ge(p->struct_size, sizeof *p);
  if (log->count == 0 || log->order[log->count - 1] != p->phase) log->order[log->count++] = p->phase;
  log->last_done[p->phase] = p->phase_done;
  log->last_total[p->phase] = p->phase_total;
  if (p->elapsed_seconds < log->last_elapsed) log->elapsed_went_back = 1;
  log->last_elapsed = p->elapsed_seconds;
  return p->phase == log->stop_in_phase;
}

START_TEST(every_phase_reports_progress_in_order) {
  grad_model_options mo;
  grad_train_options to;
  tiny_options(&mo, &to, 2);
  phase_log log = {.stop_in_phase = -1};
  to.progress = log_phase;
  to.progress_user = &log;
  const char *folders[] = {category};
  grad_model *model = NULL;
  ck_assert_int_eq(grad_model_train(&mo, &to, folders, 1, &model), GRAD_OK);
  ck_assert_int_eq(log.count, 4);
  ck_assert_int_eq(log.order[0], GRAD_TRAIN_PHASE_FEATURES);
  ck_assert_int_eq(log.order[1], GRAD_TRAIN_PHASE_REDUCTION);
  ck_assert_int_eq(log.order[2], GRAD_TRAIN_PHASE_EPOCHS);
  ck_assert_int_eq(log.order[3], GRAD_TRAIN_PHASE_CALIBRATION);
  /* 10 images trained on (3 steps per epoch, 2 epochs), 2 held out */
  ck_assert_int_eq(log.last_done[GRAD_TRAIN_PHASE_FEATURES], 10);
  ck_assert_int_eq(log.last_total[GRAD_TRAIN_PHASE_FEATURES], 10);
  ck_assert_int_eq(log.last_done[GRAD_TRAIN_PHASE_REDUCTION], 10);
  ck_assert_int_eq(log.last_done[GRAD_TRAIN_PHASE_EPOCHS], 6);
  ck_assert_int_eq(log.last_total[GRAD_TRAIN_PHASE_EPOCHS], 6);
  ck_assert_int_eq(log.last_done[GRAD_TRAIN_PHASE_CALIBRATION], 2);
  ck_assert_int_eq(log.last_total[GRAD_TRAIN_PHASE_CALIBRATION], 2);
  ck_assert_int_eq(log.elapsed_went_back, 0);
  grad_model_free(model);

  /* A stop before the first step gives no model; calibration cannot stop. */
  phase_log early = {.stop_in_phase = GRAD_TRAIN_PHASE_FEATURES};
  to.progress_user = &early;
  model = (grad_model *)1;
  ck_assert_int_eq(grad_model_train(&mo, &to, folders, 1, &model), GRAD_E_CANCELLED);
  ck_assert_ptr_null(model);
  ck_assert_ptr_nonnull(strstr(grad_last_error(), "feature extraction"));
  phase_log late = {.stop_in_phase = GRAD_TRAIN_PHASE_CALIBRATION};
  to.progress_user = &late;
  ck_assert_int_eq(grad_model_train(&mo, &to, folders, 1, &model), GRAD_OK);
  ck_assert_int_eq(late.last_done[GRAD_TRAIN_PHASE_CALIBRATION], 2);
  grad_model_free(model);
}
END_TEST

START_TEST(provenance_is_recorded_and_saved) {
  setenv("SOURCE_DATE_EPOCH", "86400", 1);
  grad_model_options mo;
  grad_train_options to;
  tiny_options(&mo, &to, 2);
  const char *folders[] = {category};
  grad_model *model = NULL, *loaded = NULL;
  ck_assert_int_eq(grad_model_train(&mo, &to, folders, 1, &model), GRAD_OK);
  ck_assert_str_eq(grad_model_provenance(model, "library_version"), grad_version_string());
  ck_assert_str_eq(grad_model_provenance(model, "date"), "1970-01-02T00:00:00Z");
  ck_assert_str_eq(grad_model_provenance(model, "folders"), "[\"weave\"]");
  ck_assert_str_eq(grad_model_provenance(model, "images"), "10");
  ck_assert_str_eq(grad_model_provenance(model, "holdout_images"), "2");
  ck_assert_str_eq(grad_model_provenance(model, "epochs"), "2");
  ck_assert_str_eq(grad_model_provenance(model, "seed"), "5");
  ck_assert_ptr_null(grad_model_provenance(model, "no such key"));
  json_error_t error;
  json_t *options = json_loads(grad_model_provenance(model, "model_options"), 0, &error);
  ck_assert_ptr_nonnull(options);
  ck_assert_str_eq(json_string_value(json_object_get(options, "arch")), "resnet18");
  ck_assert(json_is_null(json_object_get(options, "weights")));
  ck_assert_int_eq(json_integer_value(json_object_get(options, "channels")), 16);
  ck_assert_str_eq(json_string_value(json_object_get(options, "decoder")), "basic");
  ck_assert_int_eq(json_integer_value(json_object_get(options, "input_size")), 64);
  ck_assert_int_eq(json_array_size(json_object_get(options, "layers")), 2);
  json_decref(options);
  json_t *training = json_loads(grad_model_provenance(model, "train_options"), 0, &error);
  ck_assert_int_eq(json_integer_value(json_object_get(training, "batch")), 4);
  ck_assert(json_is_false(json_object_get(training, "resumed")));
  json_decref(training);

  char path[600];
  snprintf(path, sizeof path, "%s/provenance.grad", root);
  ck_assert_int_eq(grad_model_save(model, path), GRAD_OK);
  ck_assert_int_eq(grad_model_load(path, &loaded), GRAD_OK);
  size_t n = grad_model_provenance_count(model);
  ck_assert_uint_ge(n, 11);
  ck_assert_uint_eq(grad_model_provenance_count(loaded), n);
  for (size_t i = 0; i < n; i++) {
    const char *key = grad_model_provenance_key(model, i);
    ck_assert_str_eq(grad_model_provenance(loaded, key), grad_model_provenance(model, key));
  }
  ck_assert_ptr_null(grad_model_provenance_key(model, n));
  ck_assert_ptr_null(grad_model_provenance(NULL, "date"));
  grad_model_free(model);
  grad_model_free(loaded);
}
END_TEST

START_TEST(folders_are_named_relative_to_their_parent) {
  /* Two folders under one parent are named by what follows it. */
  char other[700];
  snprintf(other, sizeof other, "%s/data/more/parts", root);
  char cmd[2400];
  snprintf(cmd, sizeof cmd, "mkdir -p '%s' && cp '%s/train/good/'00[0-4].png '%s/'", other,
           category, other);
  ck_assert_int_eq(system(cmd), 0);
  grad_model_options mo;
  grad_train_options to;
  tiny_options(&mo, &to, 1);
  const char *folders[] = {category, other};
  grad_model *model = NULL;
  ck_assert_int_eq(grad_model_train(&mo, &to, folders, 2, &model), GRAD_OK);
  ck_assert_str_eq(grad_model_provenance(model, "folders"), "[\"weave\",\"more/parts\"]");
  ck_assert_str_eq(grad_model_provenance(model, "images"), "14"); /* 10 + 4 of 5 */
  grad_model_free(model);
}
END_TEST

int main(void) {
  make_data();
  Suite *suite = suite_create("train_sources");
  TCase *tc = tcase_create("train_sources");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, files_and_memory_train_the_same_model_as_the_folder);
  tcase_add_test(tc, bad_sources_are_refused_by_name);
  tcase_add_test(tc, cancelled_at_an_epoch_end_equals_the_shorter_run);
  tcase_add_test(tc, cancelled_mid_epoch_model_scores_and_saves);
  tcase_add_test(tc, provenance_is_recorded_and_saved);
  tcase_add_test(tc, train_more_continues_the_saved_store);
  tcase_add_test(tc, every_phase_reports_progress_in_order);
  tcase_add_test(tc, folders_are_named_relative_to_their_parent);
  suite_add_tcase(suite, tc);
  return test_run_suite(suite);
}
