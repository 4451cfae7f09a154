/*
 * The whole loop in C: train a model on a folder of good images, save it,
 * load it back, score images from several threads (one context each, one
 * shared model), and write each image's heatmap overlay as a PNG.
 *
 *   loop FOLDER MODEL OUT_DIR IMAGE...
 */
#include <grad/grad.h>
#include <pthread.h>
#include <stdio.h>

enum { THREADS = 2, MAX_IMAGES = 64 };

typedef struct job {
  const grad_model *model; /* shared, read-only */
  char **paths;
  int count, first;        /* this thread scores paths first, first + THREADS, ... */
  const char *out_dir;
  double scores[MAX_IMAGES];
  grad_status status;
} job;

static grad_status score_one(const grad_model *model, grad_context *ctx, const char *path,
                             const char *overlay_path, double *score) {
  grad_image *image = NULL, *overlay = NULL;
  grad_result *result = NULL;
  grad_status s = grad_image_load(path, &image);
  if (s == GRAD_OK) s = grad_model_score(model, ctx, image, &result);
  if (s == GRAD_OK) s = grad_overlay_render(model, image, result, &overlay);
  if (s == GRAD_OK) s = grad_image_save_png(overlay, overlay_path);
  if (s == GRAD_OK) *score = grad_result_score(result);
  grad_image_free(overlay);
  grad_result_free(result);
  grad_image_free(image);
  return s;
}

static void *score_images(void *arg) {
  job *j = arg;
  grad_context *ctx = NULL; /* one per thread */
  j->status = grad_context_create(j->model, &ctx);
  for (int i = j->first; j->status == GRAD_OK && i < j->count; i += THREADS) {
    char overlay_path[4096];
    snprintf(overlay_path, sizeof overlay_path, "%s/overlay_%d.png", j->out_dir, i);
    j->status = score_one(j->model, ctx, j->paths[i], overlay_path, &j->scores[i]);
    if (j->status != GRAD_OK) fprintf(stderr, "%s: %s\n", j->paths[i], grad_last_error());
  }
  grad_context_free(ctx);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 5 || argc - 4 > MAX_IMAGES) {
    fprintf(stderr, "usage: %s FOLDER MODEL OUT_DIR IMAGE...\n", argv[0]);
    return 2;
  }
  /* 1. Train (small and quick here; the defaults are 224 px and 100 epochs). */
  grad_backbone_options backbone;
  grad_backbone_options_init(&backbone, sizeof backbone);
  backbone.input_size = 128;
  grad_model_options options;
  grad_model_options_init(&options, sizeof options);
  options.backbone = &backbone;
  grad_train_options training;
  grad_train_options_init(&training, sizeof training);
  training.epochs = 2;
  const char *folders[] = {argv[1]};
  grad_model *trained = NULL, *model = NULL;
  if (grad_model_train(&options, &training, folders, 1, &trained) != GRAD_OK ||
      grad_model_save(trained, argv[2]) != GRAD_OK) { /* 2. Save */
    fprintf(stderr, "training: %s\n", grad_last_error());
    grad_model_free(trained);
    return 1;
  }
  grad_model_free(trained);
  /* 3. Load, as a separate program would. */
  if (grad_model_load(argv[2], &model) != GRAD_OK) {
    fprintf(stderr, "loading: %s\n", grad_last_error());
    return 1;
  }
  /* 4. Score from THREADS threads, each writing its images' overlays. */
  job jobs[THREADS];
  pthread_t threads[THREADS];
  for (int t = 0; t < THREADS; t++) {
    jobs[t] = (job){.model = model, .paths = argv + 4, .count = argc - 4, .first = t,
                    .out_dir = argv[3]};
    pthread_create(&threads[t], NULL, score_images, &jobs[t]);
  }
  int code = 0;
  for (int t = 0; t < THREADS; t++) {
    pthread_join(threads[t], NULL);
    if (jobs[t].status != GRAD_OK) code = 1;
  }
  for (int i = 0; code == 0 && i < argc - 4; i++)
    printf("%s: score %.4f, overlay %s/overlay_%d.png\n", argv[4 + i],
           jobs[i % THREADS].scores[i], argv[3], i);
  grad_model_free(model);
  return code;
}
