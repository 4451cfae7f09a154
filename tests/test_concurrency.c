/*
 * Concurrency stress: 8 threads share one read-only backbone and one
 * read-only model, each with its own workspace and scoring context, and
 * decode, normalise, extract features and score the same images in
 * different orders. Every result must equal the single-threaded one bit for
 * bit, and every thread's error message must be its own. The ThreadSanitizer
 * job (.ci/tsan) runs this program to catch data races the comparison
 * cannot see.
 */
#define GRAD_EXPERIMENTAL /* uses grad_synth_* (not yet promised) */
#include <ftw.h>
#include <pthread.h>
#include <unistd.h>

#include <grad/grad.h>

#include "testutil.h"

enum { THREADS = 8, ROUNDS = 2, SIZE = 64, IMAGES = 5 };

static const char *const image_names[IMAGES] = {
  "image/golden_real_kos_64x64.png", "image/golden_real_mt_97x61.png", "image/jpeg_rgb_444.jpg",
  "image/jpeg_progressive.jpg", "image/png_adam7_rgba16.png"};

/* Shared, read-only once the threads start. */
typedef struct reference {
  unsigned char *bytes[IMAGES];
  size_t sizes[IMAGES];
  float *tensors[IMAGES];  /* 3 x SIZE x SIZE */
  float *features[IMAGES]; /* C x H x W */
  double scores[IMAGES];
  float *maps[IMAGES];     /* at the image's own size */
  size_t map_sizes[IMAGES];
  size_t feature_count;
  grad_backbone *backbone;
  grad_model *model; /* NULL when no model could be trained here */
} reference;

static reference ref;
static char data_root[256]; /* the synthetic training data, removed at exit */

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st, (void)flag, (void)ftw;
  return remove(path);
}

/* Setup runs before Check starts, where ck_assert cannot report. */
#define REQUIRE(cond, ...)                                            \
  do {                                                                \
    if (!(cond)) {                                                    \
      fprintf(stderr, "test_concurrency setup: " __VA_ARGS__);        \
      fprintf(stderr, ": %s\n", grad_last_error());                  \
      exit(EXIT_FAILURE);                                             \
    }                                                                 \
  } while (0)

static unsigned char *slurp(const char *path, size_t *size) {
  FILE *f = fopen(path, "rb");
  REQUIRE(f != NULL, "%s", path);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  rewind(f);
  unsigned char *data = malloc((size_t)n);
  REQUIRE(data != NULL, "memory");
  REQUIRE(fread(data, 1, (size_t)n, f) == (size_t)n, "%s", path);
  fclose(f);
  *size = (size_t)n;
  return data;
}

/* A tiny model trained on synthetic data (resnet18 cut after layer1). */
static grad_model *train_tiny_model(void) {
  char dir[512], folder[700];
  snprintf(data_root, sizeof data_root, "%s", test_tmpdir());
  snprintf(dir, sizeof dir, "%s/data", data_root);
  grad_synth_options so;
  grad_synth_options_init(&so, sizeof so);
  so.out_dir = dir;
  so.size = SIZE;
  so.train_count = 6;
  so.test_count = 1;
  so.category = grad_synth_category_name(0);
  REQUIRE(grad_synth_write(&so) == GRAD_OK, "synthetic data");
  snprintf(folder, sizeof folder, "%s/%s", dir, so.category);
  grad_backbone_options bo;
  grad_backbone_options_init(&bo, sizeof bo);
  grad_model_options mo;
  grad_model_options_init(&mo, sizeof mo);
  mo.backbone = &bo;
  bo.layers = 1u << 1;
  bo.input_size = SIZE;
  mo.channels = 8;
  mo.blocks = 1;
  mo.holdout_fraction = 0.34;
  grad_train_options to;
  grad_train_options_init(&to, sizeof to);
  to.epochs = 1;
  to.batch = 4;
  const char *folders[] = {folder};
  grad_model *model = NULL;
  REQUIRE(grad_model_train(&mo, &to, folders, 1, &model) == GRAD_OK, "training");
  return model;
}

/* The single-threaded results, computed once before the tests fork. */
static void compute_reference(void) {
  grad_backbone_options opts;
  grad_backbone_options_init(&opts, sizeof opts);
  opts.arch = "resnet18";
  opts.random_seed = 11;
  opts.input_size = SIZE;
  REQUIRE(grad_backbone_create(&opts, &ref.backbone) == GRAD_OK, "backbone");
  ref.feature_count = (size_t)grad_backbone_feature_channels(ref.backbone) *
                      grad_backbone_feature_height(ref.backbone) *
                      grad_backbone_feature_width(ref.backbone);
  ref.model = train_tiny_model();
  grad_workspace *ws = NULL;
  grad_context *ctx = NULL;
  REQUIRE(grad_workspace_create(&ws) == GRAD_OK, "workspace");
  REQUIRE(grad_context_create(ref.model, &ctx) == GRAD_OK, "context");
  for (int i = 0; i < IMAGES; i++) {
    ref.bytes[i] = slurp(test_fixture(image_names[i]), &ref.sizes[i]);
    grad_image *image = NULL;
    grad_result *result = NULL;
    ref.tensors[i] = malloc(3 * SIZE * SIZE * sizeof(float));
    ref.features[i] = malloc(ref.feature_count * sizeof(float));
    REQUIRE(ref.tensors[i] && ref.features[i], "memory");
    REQUIRE(grad_image_load_memory(ref.bytes[i], ref.sizes[i], &image) == GRAD_OK, "%s",
            image_names[i]);
    REQUIRE(grad_image_to_tensor(image, SIZE, ref.tensors[i]) == GRAD_OK, "%s", image_names[i]);
    REQUIRE(grad_backbone_features(ref.backbone, ws, ref.tensors[i], 1, ref.features[i]) ==
                GRAD_OK,
            "%s", image_names[i]);
    REQUIRE(grad_model_score(ref.model, ctx, image, &result) == GRAD_OK, "%s", image_names[i]);
    ref.scores[i] = grad_result_score(result);
    ref.map_sizes[i] = (size_t)grad_result_width(result) * grad_result_height(result);
    ref.maps[i] = malloc(ref.map_sizes[i] * sizeof(float));
    REQUIRE(ref.maps[i], "memory");
    memcpy(ref.maps[i], grad_result_map(result), ref.map_sizes[i] * sizeof(float));
    grad_result_free(result);
    grad_image_free(image);
  }
  grad_context_free(ctx);
  grad_workspace_free(ws);
}

typedef struct worker {
  int id;
  int mismatches;
  char failure[512];
} worker;

static void fail_worker(worker *w, const char *what, int image) {
  if (!w->failure[0])
    snprintf(w->failure, sizeof w->failure, "thread %d, %s, image %s: %s", w->id, what,
             image_names[image], grad_last_error());
  w->mismatches++;
}

static void *work(void *arg) {
  worker *w = arg;
  grad_workspace *ws = NULL;
  grad_context *ctx = NULL;
  float *tensor = malloc(3 * SIZE * SIZE * sizeof(float));
  float *features = malloc(ref.feature_count * sizeof(float));
  if (grad_workspace_create(&ws) != GRAD_OK || grad_context_create(ref.model, &ctx) != GRAD_OK ||
      !tensor || !features) {
    fail_worker(w, "setup", 0);
    goto done;
  }
  for (int round = 0; round < ROUNDS; round++) {
    for (int k = 0; k < IMAGES; k++) {
      int i = (k + w->id + round) % IMAGES; /* threads work on different images at once */
      grad_image *image = NULL;
      grad_result *result = NULL;
      if (grad_image_load_memory(ref.bytes[i], ref.sizes[i], &image) != GRAD_OK) {
        fail_worker(w, "decode", i);
        continue;
      }
      if (grad_image_to_tensor(image, SIZE, tensor) != GRAD_OK ||
          memcmp(tensor, ref.tensors[i], 3 * SIZE * SIZE * sizeof(float)) != 0)
        fail_worker(w, "tensor", i);
      if (grad_backbone_features(ref.backbone, ws, tensor, 1, features) != GRAD_OK ||
          memcmp(features, ref.features[i], ref.feature_count * sizeof(float)) != 0)
        fail_worker(w, "features", i);
      if (grad_model_score(ref.model, ctx, image, &result) != GRAD_OK ||
          grad_result_score(result) != ref.scores[i] ||
          memcmp(grad_result_map(result), ref.maps[i], ref.map_sizes[i] * sizeof(float)) != 0)
        fail_worker(w, "score", i);
      grad_result_free(result);
      grad_image_free(image);

      /* Errors on this thread name this thread's file, whatever the others do. */
      char path[64];
      snprintf(path, sizeof path, "/nonexistent/thread-%d-round-%d.png", w->id, round);
      if (grad_image_load(path, &image) != GRAD_E_IO || !strstr(grad_last_error(), path))
        fail_worker(w, "error message", i);
    }
  }
done:
  free(tensor);
  free(features);
  grad_context_free(ctx);
  grad_workspace_free(ws);
  return NULL;
}

START_TEST(threads_match_single_threaded_results) {
  pthread_t threads[THREADS];
  worker workers[THREADS];
  for (int t = 0; t < THREADS; t++) {
    workers[t] = (worker){.id = t};
    ck_assert_int_eq(pthread_create(&threads[t], NULL, work, &workers[t]), 0);
  }
  for (int t = 0; t < THREADS; t++) ck_assert_int_eq(pthread_join(threads[t], NULL), 0);
  for (int t = 0; t < THREADS; t++)
    ck_assert_msg(workers[t].mismatches == 0, "%d mismatches; first: %s", workers[t].mismatches,
                  workers[t].failure);
}
END_TEST

int main(void) {
  compute_reference();
  Suite *suite = suite_create("concurrency");
  TCase *tc = tcase_create("concurrency");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, threads_match_single_threaded_results);
  suite_add_tcase(suite, tc);
  int status = test_run_suite(suite);
  for (int i = 0; i < IMAGES; i++) {
    free(ref.bytes[i]), free(ref.tensors[i]), free(ref.features[i]), free(ref.maps[i]);
  }
  grad_model_free(ref.model);
  grad_backbone_free(ref.backbone);
  nftw(data_root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
  return status;
}
