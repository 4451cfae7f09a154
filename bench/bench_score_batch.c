/*
 * bench_score_batch: grad_model_score_batch against one grad_model_score
 * call per image, same model, same images, same context, one run. A quick
 * model (synthetic "weave" images, random resnet18 weights, 1 epoch) is
 * trained first unless --model FILE is given; the timing is of scoring
 * only. Rounds alternate single and batch so drifts of the shared cores hit
 * both alike; the best round of each counts. Prints ms/image and the ratio.
 *
 * Public headers only, linked to the shared library like a user's program.
 *
 * Usage: bench_score_batch [--model FILE] [--images N] [--rounds R] [--size S]
 */
#define GRAD_EXPERIMENTAL /* uses grad_synth_*, grad_blas_core (not yet promised) */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include <grad/grad.h>

#include "bench_common.h"

static int fail(const char *what) {
  fprintf(stderr, "bench_score_batch: %s: %s\n", what, grad_last_error());
  return 1;
}

int main(int argc, char **argv) {
  bench_check_blas_core(grad_blas_core());
  const char *model_path = NULL;
  int count = 16, rounds = 3, size = 224;
  static const struct option options[] = {{"model", required_argument, NULL, 'm'},
                                          {"images", required_argument, NULL, 'n'},
                                          {"rounds", required_argument, NULL, 'r'},
                                          {"size", required_argument, NULL, 's'},
                                          {0}};
  int opt;
  while ((opt = getopt_long(argc, argv, "m:n:r:s:", options, NULL)) != -1) {
    if (opt == 'm') model_path = optarg;
    else if (opt == 'n') count = atoi(optarg);
    else if (opt == 'r') rounds = atoi(optarg);
    else if (opt == 's') size = atoi(optarg);
    else return 2;
  }
  if (count < 1 || rounds < 1 || size < 32) return 2;

  char dir[] = "/tmp/grad-bench-XXXXXX";
  if (!mkdtemp(dir)) return 1;
  grad_synth_options so;
  grad_synth_options_init(&so, sizeof so);
  so.out_dir = dir;
  so.size = size;
  so.train_count = 8;
  so.test_count = count;
  so.category = "weave";
  if (grad_synth_write(&so) != GRAD_OK) return fail("synthetic data");
  char category[256];
  snprintf(category, sizeof category, "%s/weave", dir);

  grad_model *model = NULL;
  if (model_path) {
    if (grad_model_load(model_path, &model) != GRAD_OK) return fail(model_path);
  } else {
    grad_backbone_options bo;
    grad_backbone_options_init(&bo, sizeof bo);
    grad_model_options mo;
    grad_model_options_init(&mo, sizeof mo);
    mo.backbone = &bo;
    bo.input_size = size;
    grad_train_options to;
    grad_train_options_init(&to, sizeof to);
    to.epochs = 1;
    const char *folders[] = {category};
    if (grad_model_train(&mo, &to, folders, 1, &model) != GRAD_OK) return fail("training");
  }
  grad_image **images = calloc((size_t)count, sizeof *images);
  grad_result **results = calloc((size_t)count, sizeof *results);
  char path[512];
  int loaded = 0;
  for (int d = 0; loaded < count; d++) { /* the test images, whatever their defect folder */
    const char *defect = d == 0 ? "good" : grad_synth_defect_name("weave", d - 1);
    if (!defect) break;
    for (int i = 0; loaded < count; i++) {
      snprintf(path, sizeof path, "%s/test/%s/%03d.png", category, defect, i);
      if (grad_image_load(path, &images[loaded]) != GRAD_OK) break;
      loaded++;
    }
  }
  if (loaded < count) return fail("test images");
  grad_context *ctx = NULL;
  if (grad_context_create(model, &ctx) != GRAD_OK) return fail("context");

  printf("bench_score_batch: %d images of %d x %d, model input %d, OpenBLAS kernels %s, "
         "%d threads\n", count, size, size, grad_model_input_size(model), grad_blas_core(), grad_threads_get());
  double best_single = 1e30, best_batch = 1e30;
  for (int r = 0; r < rounds; r++) {
    double t0 = bench_now();
    for (int i = 0; i < count; i++) {
      grad_result *one = NULL;
      if (grad_model_score(model, ctx, images[i], &one) != GRAD_OK) return fail("score");
      grad_result_free(one);
    }
    double t1 = bench_now();
    if (grad_model_score_batch(model, ctx, (const grad_image *const *)images, (size_t)count,
                               results) != GRAD_OK)
      return fail("score batch");
    double t2 = bench_now();
    for (int i = 0; i < count; i++) grad_result_free(results[i]);
    if (t1 - t0 < best_single) best_single = t1 - t0;
    if (t2 - t1 < best_batch) best_batch = t2 - t1;
    printf("round %d: single %.1f ms/image, batch %.1f ms/image\n", r + 1,
           1e3 * (t1 - t0) / count, 1e3 * (t2 - t1) / count);
  }
  printf("best: single %.1f ms/image, batch %.1f ms/image, batch/single time %.2f\n",
         1e3 * best_single / count, 1e3 * best_batch / count, best_batch / best_single);
  for (int i = 0; i < count; i++) grad_image_free(images[i]);
  free(images);
  free(results);
  grad_context_free(ctx);
  grad_model_free(model);
  return 0;
}
