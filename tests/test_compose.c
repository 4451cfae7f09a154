/*
 * The parts of a model composed by hand through the public API alone:
 * backbone -> reduction -> store -> head gives what grad_model_score gives
 * on the same image. Links the shared library only.
 */
#define GRAD_EXPERIMENTAL /* uses grad_synth_* (not yet promised) */
#include <grad/grad.h>

#include "testutil.h"

static grad_model *model;
static char image_path[700];

static void train_tiny_model(void) {
  char data[512], category[600];
  snprintf(data, sizeof data, "%s/data", test_tmpdir());
  snprintf(category, sizeof category, "%s/marble", data);
  grad_synth_options so;
  grad_synth_options_init(&so, sizeof so);
  so.out_dir = data;
  so.size = 48;
  so.train_count = 6;
  so.test_count = 4;
  so.category = "marble";
  ck_assert_int_eq(grad_synth_write(&so), GRAD_OK);
  snprintf(image_path, sizeof image_path, "%s/test/crack/000.png", category);

  grad_backbone_options bo;
  grad_backbone_options_init(&bo, sizeof bo);
  bo.layers = GRAD_BACKBONE_LAYER(1) | GRAD_BACKBONE_LAYER(2);
  bo.input_size = 64;
  bo.random_seed = 11;
  grad_model_options mo;
  grad_model_options_init(&mo, sizeof mo);
  mo.backbone = &bo;
  mo.channels = 12; /* fewer than the 64 + 128 raw channels: a real projection */
  mo.blocks = 1;
  grad_train_options to;
  grad_train_options_init(&to, sizeof to);
  to.epochs = 1;
  to.batch = 3;
  const char *folders[] = {category};
  ck_assert_msg(grad_model_train(&mo, &to, folders, 1, &model) == GRAD_OK, "%s",
                grad_last_error());
}

START_TEST(composed_parts_match_model_score) {
  train_tiny_model();
  const grad_backbone *bb = grad_model_backbone(model);
  const grad_reduction *reduction = grad_model_reduction(model);
  const grad_store *store = grad_model_store(model);
  const grad_head *head = grad_model_head(model);
  ck_assert(bb && reduction && store && head);

  /* The shapes chain: backbone C_raw -> reduction -> store C x H x W. */
  const int size = grad_backbone_input_size(bb);
  const int h = grad_backbone_feature_height(bb), w = grad_backbone_feature_width(bb);
  const int raw_c = grad_backbone_feature_channels(bb), c = grad_reduction_channels(reduction);
  ck_assert_int_eq(size, grad_model_input_size(model));
  ck_assert_int_eq(raw_c, 64 + 128);
  ck_assert_int_eq(grad_reduction_input_channels(reduction), raw_c);
  ck_assert_int_eq(c, 12);
  ck_assert_int_eq(grad_store_channels(store), c);
  ck_assert_int_eq(grad_store_height(store), h);
  ck_assert_int_eq(grad_store_width(store), w);
  ck_assert_int_eq(grad_head_size(head), size);
  double retained = grad_reduction_retained_variance(reduction);
  ck_assert(retained > 0.0 && retained < 1.0);

  grad_image *image = NULL;
  ck_assert_int_eq(grad_image_load(image_path, &image), GRAD_OK);
  const size_t hw = (size_t)h * w;
  float *input = malloc(3 * sizeof(float) * size * size);
  float *raw = malloc(sizeof(float) * raw_c * hw);
  float *features = malloc(sizeof(float) * c * hw);
  float *recon = malloc(sizeof(float) * c * hw);
  float *map = malloc(sizeof(float) * size * size);
  const int width = grad_image_width(image), height = grad_image_height(image);
  float *full = malloc(sizeof(float) * width * height);
  grad_workspace *ws = NULL;
  ck_assert_int_eq(grad_workspace_create(&ws), GRAD_OK);
  float score = 0;
  ck_assert_int_eq(grad_image_to_tensor(image, size, input), GRAD_OK);
  ck_assert_int_eq(grad_backbone_features(bb, ws, input, 1, raw), GRAD_OK);
  ck_assert_int_eq(grad_reduction_apply(reduction, ws, raw, 1, hw, features), GRAD_OK);
  ck_assert_int_eq(grad_store_reconstruct(store, ws, features, 1, recon), GRAD_OK);
  ck_assert_int_eq(grad_head_map(head, ws, recon, features, c, h, w, map, &score), GRAD_OK);
  ck_assert_int_eq(grad_head_resize_map(head, map, width, height, full), GRAD_OK);

  grad_context *ctx = NULL;
  grad_result *result = NULL;
  ck_assert_int_eq(grad_context_create(model, &ctx), GRAD_OK);
  ck_assert_int_eq(grad_model_score(model, ctx, image, &result), GRAD_OK);
  /* The same kernels on the same inputs: the same numbers, to float rounding. */
  ck_assert_double_eq_tol(score, grad_result_score(result), 1e-6 * fabs(score) + 1e-9);
  ck_assert_int_eq(grad_result_width(result), width);
  double ref = 0;
  double diff = test_max_abs_diff(full, grad_result_map(result), (size_t)width * height, &ref);
  ck_assert_msg(diff <= 1e-6 * ref + 1e-9, "map differs by %g (max %g)", diff, ref);
  ck_assert_int_eq(grad_head_is_anomalous(head, score), grad_result_is_anomalous(result));

  /* Bad arguments are refused with a message, never a crash. */
  ck_assert_int_eq(grad_reduction_apply(reduction, ws, raw, 0, hw, features), GRAD_E_INVALID_ARG);
  ck_assert_int_eq(grad_reduction_apply(NULL, ws, raw, 1, hw, features), GRAD_E_INVALID_ARG);
  ck_assert_ptr_null(grad_model_store(NULL));
  ck_assert_int_eq(grad_reduction_channels(NULL), 0);

  grad_result_free(result);
  grad_context_free(ctx);
  grad_workspace_free(ws);
  grad_image_free(image);
  free(input), free(raw), free(features), free(recon), free(map), free(full);
  grad_model_free(model);
}
END_TEST

int main(void) {
  Suite *s = suite_create("compose");
  TCase *tc = tcase_create("parts");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, composed_parts_match_model_score);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
