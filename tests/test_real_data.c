/*
 * Training on real normal images (../shared/data/real/kolektorsdd, skipped
 * when absent): the loss falls, and on defective test images the anomaly
 * map (the fused reconstruction error) is larger inside the defect masks
 * than outside them.
 */
#include <grad/grad.h>
#include <math.h>

#include "dataset.h"
#include "model_internal.h"
#include "testutil.h"

typedef struct losses {
  double first_epoch, last_epoch;
  int epochs_seen;
} losses;

static int record_losses(const grad_train_progress *p, void *user) {
  losses *l = user;
  if (p->epoch_done) {
    if (l->epochs_seen == 0) l->first_epoch = p->epoch_loss;
    l->last_epoch = p->epoch_loss;
    l->epochs_seen++;
  }
  return 0;
}

/* The S x S ground truth: nearest-neighbour resize, non-zero = defect. */
static uint8_t *load_mask(const char *path, int size) {
  grad_image *mask = NULL, *resized = NULL;
  ck_assert_int_eq(grad_image_load(path, &mask), GRAD_OK);
  ck_assert_int_eq(grad_image_resize(mask, size, size, GRAD_RESIZE_NEAREST, &resized), GRAD_OK);
  uint8_t *out = malloc((size_t)size * size);
  const uint8_t *px = grad_image_pixels(resized);
  int c = grad_image_channels(resized);
  for (int i = 0; i < size * size; i++) out[i] = px[i * c] != 0;
  grad_image_free(mask);
  grad_image_free(resized);
  return out;
}

START_TEST(loss_falls_and_defects_stand_out) {
  TEST_SKIP_WITHOUT_SHARED_DATA(data);
  char category[1024];
  snprintf(category, sizeof category, "%s/kolektorsdd", data);
  grad_backbone_options bo;
  grad_backbone_options_init(&bo, sizeof bo);
  grad_model_options mo;
  grad_model_options_init(&mo, sizeof mo);
  mo.backbone = &bo;
  bo.layers = (1u << 1) | (1u << 2); /* the stages that carry texture with random weights */
  bo.random_seed = 0;
  grad_train_options to;
  grad_train_options_init(&to, sizeof to);
  to.epochs = 6;
  losses l = {0};
  to.progress = record_losses;
  to.progress_user = &l;
  const char *folders[] = {category};
  grad_model *model = NULL;
  ck_assert_int_eq(grad_model_train(&mo, &to, folders, 1, &model), GRAD_OK);
  fprintf(stderr, "epoch loss: first %.6f, last %.6f\n", l.first_epoch, l.last_epoch);
  ck_assert_int_eq(l.epochs_seen, 6);
  ck_assert_double_lt(l.last_epoch, 0.5 * l.first_epoch);

  grad__test_set set;
  ck_assert_int_eq(grad__category_test_set(category, &set), GRAD_OK);
  grad_context *ctx = NULL;
  ck_assert_int_eq(grad_context_create(model, &ctx), GRAD_OK);
  int size = grad_model_input_size(model), images = 0, larger_inside = 0;
  double inside_total = 0, outside_total = 0;
  for (size_t i = 0; i < set.count; i++) {
    if (!set.items[i].mask) continue;
    grad_image *image = NULL;
    grad_result *result = NULL;
    ck_assert_int_eq(grad_image_load(set.items[i].image, &image), GRAD_OK);
    ck_assert_int_eq(grad_model_score(model, ctx, image, &result), GRAD_OK);
    uint8_t *mask = load_mask(set.items[i].mask, size);
    double inside = 0, outside = 0;
    int n_in = 0, n_out = 0;
    for (int p = 0; p < size * size; p++) {
      if (mask[p]) inside += result->model_map[p], n_in++;
      else outside += result->model_map[p], n_out++;
    }
    if (n_in > 0 && n_out > 0) {
      inside /= n_in;
      outside /= n_out;
      fprintf(stderr, "%s: mean anomaly inside %.4f, outside %.4f\n", set.items[i].image, inside,
              outside);
      images++;
      larger_inside += inside > outside;
      inside_total += inside;
      outside_total += outside;
    }
    free(mask);
    grad_result_free(result);
    grad_image_free(image);
  }
  fprintf(stderr, "%d of %d defective images larger inside; mean %.4f inside, %.4f outside\n",
          larger_inside, images, inside_total / images, outside_total / images);
  ck_assert_int_ge(images, 10);
  ck_assert_int_ge(larger_inside, images * 3 / 4);
  ck_assert_double_gt(inside_total, 1.2 * outside_total);
  grad__test_set_free(&set);
  grad_context_free(ctx);
  grad_model_free(model);
}
END_TEST

int main(void) {
  Suite *s = suite_create("real_data");
  TCase *tc = tcase_create("real_data");
  tcase_set_timeout(tc, 600);
  tcase_add_test(tc, loss_falls_and_defects_stand_out);
  suite_add_tcase(s, tc);
  return test_run_suite(s);
}
