/*
 * End to end: synthesise a small data set, train one unified model on its
 * three classes, evaluate, and require detection far above chance.
 *
 * The bounds: with this configuration (seeded random resnet18 weights,
 * layer2, 128 x 128, C = 32, 1 block, 20 epochs, data seed 5) the pipeline
 * measured mean image AUROC 0.826 and mean pixel AUROC 0.922 when the test
 * was written. Chance is 0.5; a pipeline with a broken backbone, store,
 * fusion or head (constant, shuffled or inverted maps) stays near or below
 * it. The asserted 0.65 / 0.85 leave room for small numerical differences
 * between machines while still failing any such breakage.
 */
#define GRAD_EXPERIMENTAL /* uses grad_synth_* (not yet promised) */
#include <grad/grad.h>

#include "testutil.h"

START_TEST(unified_model_detects_synthetic_defects) {
  char data[512];
  snprintf(data, sizeof data, "%s/data", test_tmpdir());
  grad_synth_options so;
  grad_synth_options_init(&so, sizeof so);
  so.out_dir = data;
  so.seed = 5;
  so.size = 96;
  so.train_count = 30;
  so.test_count = 16;
  ck_assert_int_eq(grad_synth_write(&so), GRAD_OK);

  grad_backbone_options bo;
  grad_backbone_options_init(&bo, sizeof bo);
  grad_model_options mo;
  grad_model_options_init(&mo, sizeof mo);
  mo.backbone = &bo;
  bo.random_seed = 5;
  bo.layers = 1u << 2;
  bo.input_size = 128;
  mo.channels = 32;
  mo.blocks = 1;
  grad_train_options to;
  grad_train_options_init(&to, sizeof to);
  to.epochs = 20;
  to.seed = 5;
  char folders[3][600];
  const char *paths[3];
  for (int i = 0; i < 3; i++) {
    snprintf(folders[i], sizeof folders[i], "%s/%s", data, grad_synth_category_name(i));
    paths[i] = folders[i];
  }
  grad_model *model = NULL;
  ck_assert_int_eq(grad_model_train(&mo, &to, paths, 3, &model), GRAD_OK);

  grad_context *ctx = NULL;
  ck_assert_int_eq(grad_context_create(model, &ctx), GRAD_OK);
  double image_auroc = 0, pixel_auroc = 0;
  for (int i = 0; i < 3; i++) {
    grad_eval_summary m;
    grad_eval_summary_init(&m, sizeof m);
    ck_assert_int_eq(grad_model_evaluate(model, ctx, folders[i], NULL, NULL, &m), GRAD_OK);
    fprintf(stderr, "%-8s image AUROC %.4f  pixel AUROC %.4f  AUPRO %.4f\n",
            grad_synth_category_name(i), m.image_auroc, m.pixel_auroc, m.aupro);
    image_auroc += m.image_auroc / 3;
    pixel_auroc += m.pixel_auroc / 3;
  }
  fprintf(stderr, "mean     image AUROC %.4f  pixel AUROC %.4f\n", image_auroc, pixel_auroc);
  ck_assert_double_ge(image_auroc, 0.65);
  ck_assert_double_ge(pixel_auroc, 0.85);
  grad_context_free(ctx);
  grad_model_free(model);
}
END_TEST

int main(void) {
  Suite *s = suite_create("end_to_end");
  TCase *tc = tcase_create("end_to_end");
  tcase_set_timeout(tc, 600);
  tcase_add_test(tc, unified_model_detects_synthetic_defects);
  suite_add_tcase(s, tc);
  return test_run_suite(s);
}
