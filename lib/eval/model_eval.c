/* grad_model_evaluate: the MVTec AD protocol on one category; grad_categories_find. */
#include <math.h>
#include <string.h>
#include <time.h>

#include "dataset.h"
#include "model_internal.h"

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The ground truth at S x S: nearest-neighbour resize, any non-zero pixel
 * (in any channel) anomalous. A mask must have its image's size: resizing
 * one that does not would score pixels against the wrong places. */
static grad_status load_mask(const char *path, const grad_image *of, int size, uint8_t *mask) {
  grad_image *image = NULL, *resized = NULL;
  grad_status s = grad_image_load(path, &image);
  if (s == GRAD_OK && (grad_image_width(image) != grad_image_width(of) ||
                       grad_image_height(image) != grad_image_height(of)))
    s = grad__fail(GRAD_E_SHAPE, "%s: mask of %d x %d pixels for an image of %d x %d", path,
                   grad_image_width(image), grad_image_height(image), grad_image_width(of),
                   grad_image_height(of));
  if (s == GRAD_OK) s = grad_image_resize(image, size, size, GRAD_RESIZE_NEAREST, &resized);
  if (s == GRAD_OK) {
    int c = grad_image_channels(resized);
    const uint8_t *px = grad_image_pixels(resized);
    for (size_t i = 0; i < (size_t)size * size; i++) {
      uint8_t any = 0;
      for (int k = 0; k < c; k++) any |= px[i * c + k];
      mask[i] = any ? 255 : 0;
    }
  }
  grad_image_free(image);
  grad_image_free(resized);
  return s;
}

void grad_eval_summary_init(grad_eval_summary *summary, size_t struct_size) {
  static const grad_eval_summary empty = {.struct_size = sizeof empty};
  grad__struct_init(summary, struct_size, &empty, sizeof empty);
}

/* A group's images, decoded side by side. */
typedef struct load_job {
  const grad__test_item *items;
  grad_image **images;
} load_job;

static grad_status load_image(void *data, int k, int part) {
  const load_job *j = data;
  (void)part;
  return grad_image_load(j->items[k].image, &j->images[k]);
}

grad_status grad_model_evaluate(const grad_model *model, grad_context *ctx, const char *category,
                                grad_eval_image_fn on_image, void *user,
                                grad_eval_summary *summary) {
  if (!model || !ctx || !category || !summary)
    return grad__fail(GRAD_E_INVALID_ARG, "grad_model_evaluate: NULL argument");
  grad_eval_summary out = {.struct_size = sizeof out};
  static const size_t summary_min = GRAD__STRUCT_MIN(grad_eval_summary, image_auroc);
  /* Checked before the work, written after it. */
  grad_status s = grad__struct_write("grad_eval_summary", summary, summary_min, &out, sizeof out);
  if (s != GRAD_OK) return s;
  grad__test_set set;
  s = grad__category_test_set(category, &set);
  if (s != GRAD_OK) return s;
  int size = grad_model_input_size(model);
  size_t pixels = (size_t)size * size;
  float *scores = grad__malloc_array(set.count, sizeof(float));
  uint8_t *labels = grad__malloc(set.count);
  uint8_t *mask = grad__malloc(pixels);
  grad_pixel_metrics *pm = NULL;
  if (s == GRAD_OK) s = grad_pixel_metrics_create(&pm);
  if (s == GRAD_OK && (!scores || !labels || !mask))
    s = grad__fail(GRAD_E_NOMEM, "out of memory evaluating %s", category);
  /* Groups of images through grad_model_score_batch: the backbone and the
   * decoder share a group's images out over the threads (docs/backbone.md),
   * where single images would each take every thread in turn. */
  enum { GROUP = 8 };
  double seconds = 0;
  for (size_t first = 0; s == GRAD_OK && first < set.count; first += GROUP) {
    const size_t m = set.count - first < GROUP ? set.count - first : GROUP;
    grad_image *images[GROUP] = {NULL};
    grad_result *results[GROUP] = {NULL};
    double start = now_seconds();
    load_job job = {set.items + first, images};
    s = grad__parallel_items((int)m, grad__threads(ctx->ws), load_image, &job);
    if (s == GRAD_OK)
      s = grad_model_score_batch(model, ctx, (const grad_image *const *)images, m, results);
    seconds += now_seconds() - start;
    for (size_t k = 0; s == GRAD_OK && k < m; k++) {
      const size_t i = first + k;
      const grad__test_item *item = &set.items[i];
      if (item->mask) s = load_mask(item->mask, images[k], size, mask);
      if (s == GRAD_OK && set.has_masks)
        s = grad_pixel_metrics_add(pm, results[k]->model_map, item->mask ? mask : NULL, size,
                                   size);
      if (s == GRAD_OK) {
        scores[i] = (float)results[k]->score;
        labels[i] = item->anomalous;
        if (on_image && on_image(item->image, item->defect, images[k], results[k], (int)i,
                                 (int)set.count, user))
          s = grad__fail(GRAD_E_CANCELLED, "evaluation of %s cancelled", category);
      }
    }
    for (size_t k = 0; k < m; k++) {
      grad_result_free(results[k]);
      grad_image_free(images[k]);
    }
  }
  out.images = (int)set.count;
  out.seconds = seconds;
  for (size_t i = 0; s == GRAD_OK && i < set.count; i++) out.anomalous_images += labels[i];
  if (s == GRAD_OK) s = grad_eval_auroc(scores, labels, set.count, &out.image_auroc);
  if (s == GRAD_OK) s = grad_eval_f1_max(scores, labels, set.count, &out.image_f1_max, NULL);
  if (!set.has_masks) out.pixel_auroc = out.pixel_f1_max = out.aupro = NAN; /* absent */
  if (s == GRAD_OK && set.has_masks) s = grad_pixel_metrics_auroc(pm, &out.pixel_auroc);
  if (s == GRAD_OK && set.has_masks) s = grad_pixel_metrics_f1_max(pm, &out.pixel_f1_max, NULL);
  if (s == GRAD_OK && set.has_masks)
    s = grad_pixel_metrics_aupro(pm, GRAD_AUPRO_FPR_LIMIT, &out.aupro);
  if (s == GRAD_OK)
    s = grad__struct_write("grad_eval_summary", summary, summary_min, &out, sizeof out);
  else if (!strstr(grad_last_error(), category)) grad__fail_context(s, "evaluating %s", category);
  grad_pixel_metrics_free(pm);
  grad__free(scores);
  grad__free(labels);
  grad__free(mask);
  grad__test_set_free(&set);
  return s;
}

grad_status grad_categories_find(const char *root, char ***paths, size_t *count) {
  if (!paths || !count)
    return grad__fail(GRAD_E_INVALID_ARG, "grad_categories_find: NULL argument");
  *paths = NULL;
  *count = 0;
  if (!root) return grad__fail(GRAD_E_INVALID_ARG, "grad_categories_find: root is NULL");
  grad__path_list found = {0}, all = {0};
  grad_status s = GRAD_OK;
  if (grad__is_category(root)) {
    s = grad__path_list_add(&found, root);
  } else {
    s = grad__list_subfolders(root, &all);
    for (size_t i = 0; s == GRAD_OK && i < all.count; i++)
      if (grad__is_category(all.paths[i])) s = grad__path_list_add(&found, all.paths[i]);
    grad__path_list_free(&all);
  }
  if (s == GRAD_OK && found.count == 0)
    s = grad__fail(GRAD_E_MISSING,
                   "%s: no MVTec-layout category (a folder with train/good or test) found", root);
  /* The list's array, one slot longer, becomes the caller's: NULL-terminated. */
  char **out = s == GRAD_OK ? grad__realloc(found.paths, (found.count + 1) * sizeof *out) : NULL;
  if (s == GRAD_OK && !out)
    s = grad__fail(GRAD_E_NOMEM, "%s: out of memory listing categories", root);
  if (s != GRAD_OK) {
    grad__path_list_free(&found);
    return s;
  }
  out[found.count] = NULL;
  *paths = out;
  *count = found.count;
  return GRAD_OK;
}

void grad_categories_free(char **paths) {
  if (!paths) return;
  for (char **p = paths; *p; p++) grad__free(*p);
  grad__free(paths);
}
